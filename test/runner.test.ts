import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { RunnerResultFile, StepRequestFile } from '../controller/sandbox/sandbox.js';

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
after(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })));

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

function runStep(workspace: string, code: string, options: { maxOutputBytes?: number; python?: string } = {}): Outcome {
  const id = randomUUID();
  const stepDir = join(workspace, '.oi', 'steps', id);
  mkdirSync(stepDir, { recursive: true });
  const request: StepRequestFile = {
    id,
    language: 'python',
    code,
    timeoutSec: 60,
    limits: { memoryMb: 2048, cpuSec: 60, maxProcesses: 256, maxFileMb: 100 },
    maxOutputBytes: options.maxOutputBytes ?? 100_000,
  };
  writeFileSync(join(stepDir, 'request.json'), JSON.stringify(request));
  const child = spawnSync(options.python ?? PYTHON, [RUNNER, '--workspace', workspace, '--step', id], {
    encoding: 'utf8',
    env: { PATH: '/usr/bin:/bin', HOME: '/tmp', LANG: 'C.UTF-8', PYTHONDONTWRITEBYTECODE: '1' },
    timeout: 60_000,
  });
  assert.equal(child.status, 0, `runner failed: ${child.stderr}`);
  const result = JSON.parse(readFileSync(join(stepDir, 'result.json'), 'utf8')) as RunnerResultFile;
  assert.equal(result.id, id);
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
    assert.equal(result.error, null);
    assert.equal(result.stdout, 'hello\nfrom-child\n42\n');
    assert.equal(result.stderr, 'warn\nchild-err\n');
    assert.equal(result.outputTruncated, false);
    assert.deepEqual(result.files, []);
  });

  test('a None last expression prints nothing; a statement at the end prints nothing', () => {
    const workspace = newWorkspace();
    assert.equal(runStep(workspace, 'def f():\n    return None\nf()').result.stdout, '');
    assert.equal(runStep(workspace, 'y = 3').result.stdout, '');
  });

  test("an exception in the user's code is data: error with a traceback of the user's lines, exit 0", () => {
    const workspace = newWorkspace();
    const { status, result } = runStep(workspace, 'print("before")\ndef divide(a):\n    return 1 / a\ndivide(0)');
    assert.equal(status, 0);
    assert.equal(result.stdout, 'before\n');
    assert.equal(result.error?.name, 'ZeroDivisionError');
    assert.equal(result.error?.value, 'division by zero');
    assert.match(result.error!.traceback, /line 4, in <module>\n\s+divide\(0\)/);
    assert.match(result.error!.traceback, /line 3, in divide\n\s+return 1 \/ a/);
    assert.doesNotMatch(result.error!.traceback, /runner\.py/);
  });

  test('a syntax error is reported with the offending line', () => {
    const { result } = runStep(newWorkspace(), 'x = (1,\nprint(x');
    assert.equal(result.error?.name, 'SyntaxError');
    assert.match(result.error!.traceback, /SyntaxError/);
  });

  test('output is bounded: head and tail kept with a note of what was cut', () => {
    const { result } = runStep(
      newWorkspace(),
      'print("FIRST")\nfor i in range(20000):\n    print("line", i)\nprint("LAST")',
      { maxOutputBytes: 2000 },
    );
    assert.equal(result.outputTruncated, true);
    assert.ok(result.stdout.startsWith('FIRST\n'));
    assert.ok(result.stdout.endsWith('LAST\n'));
    assert.match(result.stdout, /\[\.\.\. \d+ bytes of output cut \.\.\.\]/);
    assert.ok(Buffer.byteLength(result.stdout) < 2200);
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
    assert.equal(result.error, null);
    assert.deepEqual(result.files, [
      { path: 'gone.txt', change: 'deleted', size: 0 },
      { path: 'keep.txt', change: 'modified', size: 7 },
      { path: 'out/new.csv', change: 'created', size: 4 },
    ]);
  });

  test('plt.show() and figures left open are saved as PNGs without overwriting files', { skip: !hasMatplotlib && 'matplotlib is not installed for /usr/bin/python3' }, () => {
    const workspace = newWorkspace();
    writeFileSync(join(workspace, 'figure_1.png'), 'a user file');
    const { result } = runStep(
      workspace,
      'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.title("売上")\nplt.show()\nplt.figure()\nplt.bar(["a"], [1])',
    );
    assert.equal(result.error, null);
    assert.deepEqual(result.figures, ['figure_2.png', 'figure_3.png']);
    assert.equal(readFileSync(join(workspace, 'figure_1.png'), 'utf8'), 'a user file');
    for (const name of result.figures) {
      assert.deepEqual(readFileSync(join(workspace, name)).subarray(0, 8), PNG_SIGNATURE);
      assert.ok(result.files.some((file) => file.path === name && file.change === 'created'));
    }
    // Closed after saving: the next step does not save them again.
    assert.deepEqual(runStep(workspace, 'plt.get_fignums()').result.figures, []);
  });

  test('a step that does not use them imports neither pandas, matplotlib nor dill (fast start)', () => {
    const { result } = runStep(newWorkspace(), 'import sys\nsorted(m for m in sys.modules if m.split(".")[0] in ("pandas", "matplotlib", "dill", "numpy"))');
    assert.equal(result.stdout, '[]\n');
  });

  test('state survives into a fresh process: DataFrame, function, class, lambda and module aliases', { skip: !(hasPandas && hasDill) && 'pandas or dill missing for /usr/bin/python3' }, () => {
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
    assert.equal(first.error, null);
    assert.deepEqual(first.unsaved, []);
    const second = runStep(workspace, 'print(df.shape, total(df), box.v, square(3), j.dumps([1]), p.basename("/a/b"), pd.__name__)').result;
    assert.equal(second.error, null, second.error?.traceback);
    assert.equal(second.stdout, "(3, 2) 36 7 9 [1] b pandas\n");
  });

  test('unpicklable values are listed in unsaved and never fail the step; the rest survives', () => {
    const workspace = newWorkspace();
    const first = runStep(workspace, 'handle = open("log.txt", "w")\ngen = (i for i in range(3))\nkept = {"a": 1}').result;
    assert.equal(first.error, null);
    assert.deepEqual(first.unsaved, ['gen', 'handle']);
    const second = runStep(workspace, 'print(kept, "gen" in globals(), "handle" in globals())').result;
    assert.equal(second.stdout, "{'a': 1} False False\n");
  });

  test('a corrupt state file is dropped with a note, never a crash', () => {
    const workspace = newWorkspace();
    runStep(workspace, 'value = 5');
    writeFileSync(join(workspace, '.oi', 'state.pkl'), 'not a pickle at all');
    const { result } = runStep(workspace, 'print("value" in globals())\nnew_value = 1');
    assert.equal(result.error, null);
    assert.equal(result.stdout, 'False\n');
    assert.equal(result.notes.length, 1);
    assert.match(result.notes[0]!, /could not be loaded and was dropped/);
    assert.equal(runStep(workspace, 'new_value').result.stdout, '1\n');
  });

  test('works with a bare Python without dill, pandas or matplotlib', { skip: (barePython === undefined || barePython === '' || hasModule('dill', 'python3')) && 'no bare python3 on PATH' }, () => {
    const workspace = newWorkspace();
    const first = runStep(workspace, 'import math as m\nnumber = 4\ndef twice(x):\n    return 2 * x\nm.sqrt(number)', { python: barePython }).result;
    assert.equal(first.stdout, '2.0\n');
    assert.deepEqual(first.unsaved, ['twice']);
    assert.equal(runStep(workspace, 'm.floor(number + 0.5)', { python: barePython }).result.stdout, '4\n');
  });

  test('a memory hog ends with an error naming the memory limit', () => {
    const { result } = runStep(newWorkspace(), 'data = bytearray(10 * 1024 ** 3)');
    assert.equal(result.error?.name, 'MemoryError');
    assert.equal(result.limit, 'memory');
    assert.match(result.error!.value, /SANDBOX_MEMORY_MB=2048/);
  });

  test('a file past the file size limit ends with an error naming the limit', () => {
    const { result } = runStep(newWorkspace(), 'with open("big.bin", "wb") as f:\n    f.write(b"x" * (101 * 1024 * 1024))');
    assert.equal(result.limit, 'file_size');
    assert.match(result.error!.value, /SANDBOX_MAX_FILE_MB=100/);
  });

  test('exits non-zero when the runner itself cannot work (no request)', () => {
    const workspace = newWorkspace();
    const child = spawnSync(PYTHON, [RUNNER, '--workspace', workspace, '--step', 'missing'], { encoding: 'utf8' });
    assert.notEqual(child.status, 0);
    assert.match(child.stderr, /request\.json/);
    assert.equal(existsSync(join(workspace, '.oi', 'steps', 'missing', 'result.json')), false);
  });
});
