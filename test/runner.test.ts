import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import type { RunnerResultFile, StepRequestFile } from '../controller/sandbox/runner-protocol.js';

// The real runner.py on real Python, driven through its files exactly as both sandboxes drive it.

const RUNNER = fileURLToPath(new URL('../sandbox-image/runner.py', import.meta.url));
const PYTHON = '/usr/bin/python3';
const hasModule = (module: string, python = PYTHON) =>
  spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0;
const hasPandas = hasModule('pandas');
const hasMatplotlib = hasModule('matplotlib');
const hasDill = hasModule('dill');
// The pyenv python3 on PATH has none of the libraries: the runner must still work with it.
const barePython = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout?.trim();

const roots: string[] = [];
afterAll(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })));

function newWorkspace(): string {
  const root = mkdtempSync(join(tmpdir(), 'runner-test-'));
  roots.push(root);
  return root;
}

interface Outcome {
  status: number | null;
  stderr: string;
  result: RunnerResultFile;
}

function runStep(workspace: string, code: string, options: { maxOutputBytes?: number; python?: string; timeoutSec?: number } = {}): Outcome {
  const timeoutSec = options.timeoutSec ?? 60;
  const id = randomUUID();
  const stepDir = join(workspace, '.oi', 'steps', id);
  mkdirSync(stepDir, { recursive: true });
  const request: StepRequestFile = {
    id,
    language: 'python',
    code,
    timeoutSec,
    limits: { memoryMb: 2048, cpuSec: 60, maxProcesses: 256, maxFileMb: 100 },
    maxOutputBytes: options.maxOutputBytes ?? 100_000,
    displays: true,
  };
  writeFileSync(join(stepDir, 'request.json'), JSON.stringify(request));
  const child = spawnSync(options.python ?? PYTHON, [RUNNER, '--workspace', workspace, '--step', id], {
    encoding: 'utf8',
    env: { PATH: '/usr/bin:/bin', HOME: '/tmp', LANG: 'C.UTF-8', PYTHONDONTWRITEBYTECODE: '1' },
    // The runner stops the code at timeoutSec itself; this only keeps a broken runner from hanging the test.
    timeout: (timeoutSec + 10) * 1000,
  });
  expect(child.status, `runner failed: ${child.stderr}`).toBe(0);
  const result = JSON.parse(readFileSync(join(stepDir, 'result.json'), 'utf8')) as RunnerResultFile;
  expect(result.id).toBe(id);
  return { status: child.status, stderr: child.stderr, result };
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

describe('runner.py', () => {
  test('captures stdout, stderr (also of child processes) and prints the last expression like a notebook', () => {
    const workspace = newWorkspace();
    const { result } = runStep(
      workspace,
      'import os, sys\nprint("hello")\nprint("warn", file=sys.stderr)\nos.system("echo from-child; echo child-err >&2")\nx = 20\nx * 2 + 2',
    );
    expect(result.error).toBeNull();
    expect(result.stdout).toBe('hello\nfrom-child\n42\n');
    expect(result.stderr).toBe('warn\nchild-err\n');
    expect(result.outputTruncated).toBe(false);
    expect(result.files).toStrictEqual([]);
  });

  test('a None last expression prints nothing; a statement at the end prints nothing', () => {
    const workspace = newWorkspace();
    expect(runStep(workspace, 'def f():\n    return None\nf()').result.stdout).toBe('');
    expect(runStep(workspace, 'y = 3').result.stdout).toBe('');
  });

  test("an exception in the user's code is data: error with a traceback of the user's lines, exit 0", () => {
    const workspace = newWorkspace();
    const { status, result } = runStep(workspace, 'print("before")\ndef divide(a):\n    return 1 / a\ndivide(0)');
    expect(status).toBe(0);
    expect(result.stdout).toBe('before\n');
    expect(result.error?.name).toBe('ZeroDivisionError');
    expect(result.error?.value).toBe('division by zero');
    expect(result.error!.traceback).toMatch(/line 4, in <module>\n\s+divide\(0\)/);
    expect(result.error!.traceback).toMatch(/line 3, in divide\n\s+return 1 \/ a/);
    expect(result.error!.traceback).not.toMatch(/runner\.py/);
  });

  test('a syntax error is reported with the offending line', () => {
    const { result } = runStep(newWorkspace(), 'x = (1,\nprint(x');
    expect(result.error?.name).toBe('SyntaxError');
    expect(result.error!.traceback).toMatch(/SyntaxError/);
  });

  test('output is bounded: head and tail kept with a note of what was cut', () => {
    const { result } = runStep(
      newWorkspace(),
      'print("FIRST")\nfor i in range(20000):\n    print("line", i)\nprint("LAST")',
      { maxOutputBytes: 2000 },
    );
    expect(result.outputTruncated).toBe(true);
    expect(result.stdout).toMatch(/^FIRST\n/);
    expect(result.stdout).toMatch(/LAST\n$/);
    expect(result.stdout).toMatch(/\[\.\.\. \d+ bytes of output cut \.\.\.\]/);
    expect(Buffer.byteLength(result.stdout)).toBeLessThan(2200);
  });

  test('reports files created, modified and deleted, never .oi/, never through symlinks', () => {
    const workspace = newWorkspace();
    const outside = newWorkspace();
    writeFileSync(join(outside, 'host.txt'), 'host');
    writeFileSync(join(workspace, 'keep.txt'), 'old');
    writeFileSync(join(workspace, 'gone.txt'), 'bye');
    symlinkSync(outside, join(workspace, 'linked-dir'));
    const { result } = runStep(
      workspace,
      [
        'import os',
        'os.makedirs("out", exist_ok=True)',
        'open("out/new.csv", "w").write("a,b\\n")',
        'open("keep.txt", "a").write("more")',
        'os.remove("gone.txt")',
        'open(".oi/private", "w").write("x")',
        'os.symlink("/etc/hostname", "link-to-host")',
        'open("linked-dir/host.txt", "a").write("!")',
      ].join('\n'),
    );
    expect(result.error).toBeNull();
    expect(result.files).toStrictEqual([
      { path: 'gone.txt', change: 'deleted', size: 0 },
      { path: 'keep.txt', change: 'modified', size: 7 },
      { path: 'out/new.csv', change: 'created', size: 4 },
    ]);
  });

  test.skipIf(!hasMatplotlib)('plt.show() and figures left open are saved as PNGs without overwriting files', () => {
    const workspace = newWorkspace();
    writeFileSync(join(workspace, 'figure_1.png'), 'a user file');
    const { result } = runStep(
      workspace,
      'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.title("売上")\nplt.show()\nplt.figure()\nplt.bar(["a"], [1])',
    );
    expect(result.error).toBeNull();
    expect(result.figures).toStrictEqual(['figure_2.png', 'figure_3.png']);
    expect(readFileSync(join(workspace, 'figure_1.png'), 'utf8')).toBe('a user file');
    for (const name of result.figures) {
      expect(readFileSync(join(workspace, name)).subarray(0, 8)).toStrictEqual(PNG_SIGNATURE);
      expect(result.files).toContainEqual(expect.objectContaining({ path: name, change: 'created' }));
    }
    // Closed after saving: the next step does not save them again.
    expect(runStep(workspace, 'plt.get_fignums()').result.figures).toStrictEqual([]);
  });

  test('a step that does not use them imports neither pandas, matplotlib nor dill (fast start)', () => {
    const { result } = runStep(newWorkspace(), 'import sys\nsorted(m for m in sys.modules if m.split(".")[0] in ("pandas", "matplotlib", "dill", "numpy"))');
    expect(result.stdout).toBe('[]\n');
  });

  test.skipIf(!(hasPandas && hasDill))('state survives into a fresh process: DataFrame, function, class, lambda and module aliases', () => {
    const workspace = newWorkspace();
    writeFileSync(join(workspace, 'sales.csv'), 'region,amount\neast,10\nwest,20\nnorth,5\n');
    const first = runStep(
      workspace,
      [
        'import pandas as pd',
        'import json as j',
        'from os import path as p',
        'df = pd.read_csv("sales.csv")',
        'def total(frame):\n    return int(frame["amount"].sum()) + offset',
        'offset = 1',
        'class Box:\n    def __init__(self, v):\n        self.v = v',
        'box = Box(7)',
        'square = lambda n: n * n',
      ].join('\n'),
    ).result;
    expect(first.error).toBeNull();
    expect(first.unsaved).toStrictEqual([]);
    const second = runStep(workspace, 'print(df.shape, total(df), box.v, square(3), j.dumps([1]), p.basename("/a/b"), pd.__name__)').result;
    expect(second.error, second.error?.traceback).toBeNull();
    expect(second.stdout).toBe("(3, 2) 36 7 9 [1] b pandas\n");
  });

  test('unpicklable values are listed in unsaved and never fail the step; the rest survives', () => {
    const workspace = newWorkspace();
    const first = runStep(workspace, 'handle = open("log.txt", "w")\ngen = (i for i in range(3))\nkept = {"a": 1}').result;
    expect(first.error).toBeNull();
    expect(first.unsaved).toStrictEqual(['gen', 'handle']);
    const second = runStep(workspace, 'print(kept, "gen" in globals(), "handle" in globals())').result;
    expect(second.stdout).toBe("{'a': 1} False False\n");
  });

  test('a corrupt state file is dropped with a note, never a crash', () => {
    const workspace = newWorkspace();
    runStep(workspace, 'value = 5');
    writeFileSync(join(workspace, '.oi', 'state.pkl'), 'not a pickle at all');
    const { result } = runStep(workspace, 'print("value" in globals())\nnew_value = 1');
    expect(result.error).toBeNull();
    expect(result.stdout).toBe('False\n');
    expect(result.notes).toHaveLength(1);
    expect(result.notes[0]!).toMatch(/could not be loaded and was dropped/);
    expect(runStep(workspace, 'new_value').result.stdout).toBe('1\n');
  });

  test.skipIf((barePython === undefined || barePython === '' || hasModule('dill', 'python3')))('works with a bare Python without dill, pandas or matplotlib', () => {
    const workspace = newWorkspace();
    const first = runStep(workspace, 'import math as m\nnumber = 4\ndef twice(x):\n    return 2 * x\nm.sqrt(number)', { python: barePython }).result;
    expect(first.stdout).toBe('2.0\n');
    expect(first.unsaved).toStrictEqual(['twice']);
    expect(runStep(workspace, 'm.floor(number + 0.5)', { python: barePython }).result.stdout).toBe('4\n');
  });

  test("the step's own alarm stops it at timeoutSec; the variables it made before survive into the next step", () => {
    const workspace = newWorkspace();
    const { result } = runStep(workspace, 'made_before = [1, 2, 3]\nprint("looping", flush=True)\nwhile True:\n    pass', { timeoutSec: 1 });
    expect(result.limit).toBe('timeout');
    expect(result.error?.name).toBe('StepTimeout');
    expect(result.error?.value).toBe('The step was stopped after 1 s (STEP_TIMEOUT_SEC).');
    expect(result.stdout).toBe('looping\n');
    expect(result.unsaved).toStrictEqual([]);
    expect(runStep(workspace, 'print(sum(made_before))').result.stdout).toBe('6\n');
  });

  test('a memory hog ends with an error naming the memory limit', () => {
    const { result } = runStep(newWorkspace(), 'data = bytearray(10 * 1024 ** 3)');
    expect(result.error?.name).toBe('MemoryError');
    expect(result.limit).toBe('memory');
    expect(result.error!.value).toMatch(/SANDBOX_MEMORY_MB=2048/);
  });

  test('a file past the file size limit ends with an error naming the limit', () => {
    const { result } = runStep(newWorkspace(), 'with open("big.bin", "wb") as f:\n    f.write(b"x" * (101 * 1024 * 1024))');
    expect(result.limit).toBe('file_size');
    expect(result.error!.value).toMatch(/SANDBOX_MAX_FILE_MB=100/);
  });

  test('exits non-zero when the runner itself cannot work (no request)', () => {
    const workspace = newWorkspace();
    const child = spawnSync(PYTHON, [RUNNER, '--workspace', workspace, '--step', 'missing'], { encoding: 'utf8' });
    expect(child.status).not.toBe(0);
    expect(child.stderr).toMatch(/request\.json/);
    expect(existsSync(join(workspace, '.oi', 'steps', 'missing', 'result.json'))).toBe(false);
  });
});
