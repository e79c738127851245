import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { createLogger, silentLogger } from '../controller/logger.js';
import { LocalSandbox } from '../controller/sandbox/local/local-sandbox.js';
import { SandboxError, type ResourceLimits } from '../controller/sandbox/sandbox.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import type { Workspace } from '../controller/workspace/workspace.js';
import { isSandboxError, thrownBy } from './helpers/sandbox-errors.js';
import { jailIfAvailable } from './helpers/jail-available.js';

// LocalSandbox with the real runner on real Python, in the isolation mode this machine supports
// (bubblewrap when usable) and as a plain process (SANDBOX_ISOLATION=off).

const LIMITS: ResourceLimits = { memoryMb: 1024, cpuSec: 60, maxProcesses: 64, maxFileMb: 100 };
const dataDir = mkdtempSync(join(tmpdir(), 'local-sandbox-test-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
const store = new LocalWorkspaceStore(dataDir);
let threadCounter = 0;
const newThread = (): Workspace => store.open({ team: 'T1', channel: 'C1', threadTs: `1700000000.${String(++threadCounter).padStart(6, '0')}` });

const sandboxes = {
  [jailIfAvailable() === 'required' ? 'jailed' : 'jail unavailable, off']: new LocalSandbox({ network: 'off', isolation: jailIfAvailable(), limits: LIMITS, logger: silentLogger }),
  off: new LocalSandbox({ network: 'off', isolation: 'off', limits: LIMITS, logger: silentLogger }),
};
afterAll(() => Promise.all(Object.values(sandboxes).map((sandbox) => sandbox.close())));

/** Host pids whose command line is exactly `sleep <marker>`. */
function processesRunning(marker: string): string[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return readFileSync(`/proc/${name}/cmdline`, 'utf8') === `sleep\0${marker}\0`;
      } catch {
        return false;
      }
    });
}

async function waitUntilGone(marker: string): Promise<string[]> {
  for (let attempt = 0; attempt < 40 && processesRunning(marker).length > 0; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return processesRunning(marker);
}

for (const [mode, sandbox] of Object.entries(sandboxes)) {
  describe(`LocalSandbox (isolation ${mode}: ${sandbox.describeIsolation()})`, () => {
    test('runs a step in the thread workspace and returns its result', async () => {
      const workspace = newThread();
      await workspace.write('input.txt', 'forty-one');
      const result = await sandbox.run(workspace, {
        language: 'python',
        code: 'text = open("input.txt").read()\nopen("out.txt", "w").write(text.upper())\nlen(text)',
        timeoutSec: 30,
      });
      expect(result.error).toBeNull();
      expect(result.stdout).toBe('9\n');
      expect(result.exitCode).toBe(0);
      expect(result.stepId).toMatch(/^[0-9a-f-]{36}$/);
      const stepsDir = join((workspace.location as { dir: string }).dir, '.oi', 'steps');
      expect(readdirSync(stepsDir), 'finished step folders are removed').toStrictEqual([]);
      expect(result.files).toStrictEqual([{ path: 'out.txt', change: 'created', size: 9 }]);
      const stat = await workspace.stat('out.txt');
      expect(stat?.size).toBe(9);
      // State carries over to the next step of the same thread.
      expect((await sandbox.run(workspace, { language: 'python', code: 'text', timeoutSec: 30 })).stdout).toBe("'forty-one'\n");
    });

    test('the environment holds none of the controller secrets (os.environ and /proc/*/environ)', async () => {
      process.env.FAKE_SECRET_TOKEN = 'xoxb-fake-secret-value-123';
      try {
        const result = await sandbox.run(newThread(), {
          language: 'python',
          code: [
            'import glob, os',
            'found = [k for k, v in os.environ.items() if "fake-secret" in v or k == "FAKE_SECRET_TOKEN"]',
            'for path in ["/proc/self/environ", "/proc/1/environ", *glob.glob("/proc/*/environ")]:',
            '    try:',
            '        if b"fake-secret" in open(path, "rb").read():',
            '            found.append(path)',
            '    except OSError:',
            '        pass',
            'print("found:", found)',
            'print("SLACK" in str(dict(os.environ)), "OPENAI" in str(dict(os.environ)))',
          ].join('\n'),
          timeoutSec: 30,
        });
        expect(result.error).toBeNull();
        expect(result.stdout).toBe('found: []\nFalse False\n');
      } finally {
        delete process.env.FAKE_SECRET_TOKEN;
      }
    });

    test('a step over STEP_TIMEOUT_SEC ends with limit timeout and its child processes are killed', async () => {
      const marker = `1000.${mode === 'auto' ? 11 : 12}`;
      const result = await sandbox.run(newThread(), {
        language: 'python',
        code: `import subprocess\nsubprocess.Popen(["sleep", "${marker}"])\nprint("started", flush=True)\nwhile True:\n    pass`,
        timeoutSec: 1,
      });
      expect(result.limit).toBe('timeout');
      expect(result.error?.value).toBe('The step was stopped after 1 s (STEP_TIMEOUT_SEC).');
      expect(result.stdout).toBe('started\n');
      expect(await waitUntilGone(marker)).toStrictEqual([]);
    });

    test('the runner stops a step at its timeout itself: the variables it made survive into the next step', async () => {
      // Only the runner's own alarm lets the step save its state; the controller's kill (timeout + grace) cannot.
      const workspace = newThread();
      const result = await sandbox.run(workspace, { language: 'python', code: "made_before_the_timeout = 'kept'\nwhile True:\n    pass", timeoutSec: 1 });
      expect(result.limit).toBe('timeout');
      expect(result.error?.value).toBe('The step was stopped after 1 s (STEP_TIMEOUT_SEC).');
      const next = await sandbox.run(workspace, { language: 'python', code: 'print(made_before_the_timeout)', timeoutSec: 30 });
      expect(next.error, next.error?.traceback).toBeNull();
      expect(next.stdout).toBe('kept\n');
    });

    test('code that ignores the timeout signal is killed by the controller (limit timeout)', async () => {
      const marker = `1000.${mode === 'auto' ? 21 : 22}`;
      const result = await sandbox.run(newThread(), {
        language: 'python',
        code: `import signal, subprocess\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nsubprocess.Popen(["sleep", "${marker}"])\nprint("spinning", flush=True)\nwhile True:\n    pass`,
        timeoutSec: 1,
      });
      expect(result.limit).toBe('timeout');
      expect(result.error!.value).toMatch(/stopped after 1 s \(STEP_TIMEOUT_SEC\)/);
      expect(result.stdout).toBe('spinning\n');
      expect(await waitUntilGone(marker)).toStrictEqual([]);
    });

    test('aborting the signal kills the step tree and throws SandboxError cancelled', async () => {
      const marker = `1000.${mode === 'auto' ? 31 : 32}`;
      const controller = new AbortController();
      const workspace = newThread();
      const running = sandbox.run(
        workspace,
        { language: 'python', code: `import subprocess\nsubprocess.Popen(["sleep", "${marker}"]).wait()`, timeoutSec: 60 },
        { signal: controller.signal },
      );
      for (let attempt = 0; attempt < 100 && processesRunning(marker).length === 0; attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(processesRunning(marker)).toHaveLength(1);
      controller.abort();
      await expect(running).rejects.toSatisfy(isSandboxError('cancelled'));
      expect(await waitUntilGone(marker)).toStrictEqual([]);
    });

    test('a CPU hog ends with an error naming the CPU limit', async () => {
      const cpuSandbox = new LocalSandbox({
        network: 'off',
        isolation: mode === 'off' ? 'off' : jailIfAvailable(),
        limits: { ...LIMITS, cpuSec: 1 },
        logger: silentLogger,
      });
      const result = await cpuSandbox.run(newThread(), { language: 'python', code: 'while True:\n    pass', timeoutSec: 60 });
      expect(result.limit).toBe('cpu');
      expect(result.error!.value).toMatch(/SANDBOX_CPU_SEC=1/);
    });

    test('a runner killed by SIGKILL gives a result, not a crash: a memory-limit one unless a cgroup shows it was not the OOM killer', async () => {
      const result = await sandbox.run(newThread(), {
        language: 'python',
        code: 'import os, signal\nprint("about to die", flush=True)\nos.kill(os.getpid(), signal.SIGKILL)',
        timeoutSec: 30,
      });
      if (sandbox.describeIsolation().includes('cgroups: cgroup')) {
        // The cgroup's OOM count tells this kill apart from the memory limit (issue 14).
        expect(result.limit).toBe(undefined);
        expect(result.error!.value).toMatch(/killed by SIGKILL/);
      } else {
        expect(result.limit).toBe('memory');
        expect(result.error!.value).toMatch(/SANDBOX_MEMORY_MB=1024/);
      }
      expect(result.stdout).toBe('about to die\n');
    });
  });
}

describe('LocalSandbox setup and failures', () => {
  test('refuses a workspace that is not local', async () => {
    const gcsWorkspace = { ...newThread(), location: { kind: 'gcs', bucket: 'b', prefix: 'p/' } } as unknown as Workspace;
    await expect(sandboxes.off.run(gcsWorkspace, { language: 'python', code: 'print(1)', timeoutSec: 5 })).rejects.toSatisfy(isSandboxError('unsupported_workspace'));
  });

  test('a runner that crashes is a SandboxError runner_failed with the stderr tail in the message only', async () => {
    const runnerDir = mkdtempSync(join(tmpdir(), 'broken-runner-'));
    try {
      writeFileSync(join(runnerDir, 'runner.py'), 'import sys\nsys.stderr.write("runner exploded: detail\\n")\nsys.exit(3)\n');
      const sandbox = new LocalSandbox({ network: 'off', isolation: 'off', limits: LIMITS, logger: silentLogger, runnerDir });
      const error = await sandbox.run(newThread(), { language: 'python', code: 'print(1)', timeoutSec: 5 }).catch((caught: unknown) => caught);
      expect(error).toSatisfy(isSandboxError('runner_failed', /runner exploded: detail/));
      expect((error as SandboxError).userMessage, 'the detail stays out of the thread').not.toContain('exploded');
    } finally {
      rmSync(runnerDir, { recursive: true, force: true });
    }
  });

  test('SANDBOX_PYTHON that cannot run the runner stops start-up with a clear message', () => {
    const start = () => new LocalSandbox({ python: '/nonexistent/python3', network: 'off', isolation: 'off', limits: LIMITS, logger: silentLogger });
    expect(thrownBy(start)).toSatisfy(isSandboxError('start_failed', /SANDBOX_PYTHON/));
  });

  test('without a usable bwrap: required refuses to start; off, set explicitly, warns loudly once and runs unisolated', async () => {
    const savedPath = process.env.PATH;
    process.env.PATH = '/nonexistent'; // bwrap is looked up on PATH
    try {
      const required = () => new LocalSandbox({ python: '/usr/bin/python3', network: 'off', isolation: 'required', limits: LIMITS, logger: silentLogger, searchPath: process.env.PATH });
      const refusal = thrownBy(required);
      expect(refusal).toBeInstanceOf(SandboxError);
      expect((refusal as SandboxError).message).toMatch(/SANDBOX_ISOLATION=required/);
      expect((refusal as SandboxError).message).toMatch(/bubblewrap/);
      const lines: string[] = [];
      const sandbox = new LocalSandbox({
        python: '/usr/bin/python3',
        network: 'off',
        isolation: 'off',
        limits: LIMITS,
        logger: createLogger({ write: (line) => lines.push(line) }),
        searchPath: process.env.PATH,
      });
      const warnings = lines.map((line) => JSON.parse(line) as { severity: string; message: string }).filter((line) => line.severity === 'WARNING');
      expect(warnings.filter((line) => /NOT isolated/.test(line.message))).toHaveLength(1);
      expect(sandbox.describeIsolation()).toMatch(/NOT isolated/);
      process.env.PATH = savedPath;
      const result = await sandbox.run(newThread(), { language: 'python', code: 'print("plain")', timeoutSec: 30 });
      expect(result.stdout).toBe('plain\n');
    } finally {
      process.env.PATH = savedPath;
    }
  });

  test('a .oi/steps replaced by a symlink is not followed by the controller', async () => {
    const workspace = newThread();
    const elsewhere = mkdtempSync(join(tmpdir(), 'elsewhere-'));
    try {
      // The runner cannot write its result through the code's symlink: that step fails as infrastructure.
      const code = `import os, shutil\nshutil.rmtree(".oi/steps", ignore_errors=True)\nos.symlink(${JSON.stringify(elsewhere)}, ".oi/steps")`;
      await expect(sandboxes.off.run(workspace, { language: 'python', code, timeoutSec: 30 })).rejects.toSatisfy(isSandboxError('runner_failed'));
      const result = await sandboxes.off.run(workspace, { language: 'python', code: 'print("ok")', timeoutSec: 30 });
      expect(result.stdout).toBe('ok\n');
      expect(readdirSync(elsewhere)).toStrictEqual([]);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});

// Makes sure nothing of ours is left running if a test failed half-way.
afterAll(async () => {
  await Promise.all(Object.values(sandboxes).map((sandbox) => sandbox.close()));
});
