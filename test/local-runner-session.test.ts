import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../controller/logger.js';
import { JailRuntime } from '../controller/sandbox/local/jail-runtime.js';
import { RunnerSession } from '../controller/sandbox/local/runner-session.js';
import { resolvePython } from '../controller/sandbox/local/python.js';
import type { ResourceLimits, StepResult } from '../controller/sandbox/sandbox.js';
import { handOverWorkspace, isRoot } from '../controller/sandbox/local/sandbox-user.js';

// Issues 13 and 14: one jailed runner.py session per thread, driven over its JSON-lines protocol, with
// the real runner on real Python. What a hostile or stuck step does to the session, and what the
// controller keeps of it.

const LIMITS: ResourceLimits = { memoryMb: 512, cpuSec: 60, maxProcesses: 64, maxFileMb: 100 };
const root = mkdtempSync(join(tmpdir(), 'runner-session-'));

function makeRuntime(): JailRuntime | string {
  if (!isRoot()) return 'needs root (drop-root jail, cgroups)';
  try {
    const runtime = new JailRuntime({
      isolation: 'required',
      network: 'off',
      python: resolvePython(undefined, process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin'),
      runnerDir: resolve('sandbox-image'),
      limits: LIMITS,
      logger: silentLogger,
      searchPath: process.env.PATH ?? '/usr/bin:/bin',
    });
    return runtime.hasCgroups ? runtime : 'no usable cgroups';
  } catch (error) {
    return (error as Error).message;
  }
}

const runtime = makeRuntime();
const skip = typeof runtime === 'string' ? runtime : false;
afterAll(async () => {
  if (typeof runtime !== 'string') await runtime.close();
  rmSync(root, { recursive: true, force: true });
});

let threads = 0;
async function startSession(workspaceDir = join(root, `thread-${++threads}`)): Promise<{ session: RunnerSession; workspaceDir: string }> {
  const jail = runtime as JailRuntime;
  mkdirSync(workspaceDir, { recursive: true });
  await handOverWorkspace(workspaceDir, jail.userFor(workspaceDir)!);
  const slot = await jail.takeSlot();
  const session = await RunnerSession.start({
    slot,
    releaseSlot: (used) => jail.releaseSlot(used),
    spawnRunner: (used, args) => jail.spawnRunner(used, workspaceDir, args),
    workspaceDir,
    limits: LIMITS,
    maxOutputBytes: 100_000,
    logger: silentLogger,
  });
  return { session, workspaceDir };
}

async function step(session: RunnerSession, code: string, options: { timeoutSec?: number; signal?: AbortSignal } = {}): Promise<{ result: StepResult; ended?: string }> {
  return session.runStep({ language: 'python', code, timeoutSec: options.timeoutSec ?? 20 }, { fileLimitMb: 100, signal: options.signal });
}

/** Python processes of the session's jail (the runner and whatever a step started). */
function pythonProcesses(session: RunnerSession): number[] {
  const group = (session as unknown as { options: { slot: { cgroup: { processes(): number[] } } } }).options.slot.cgroup;
  return group.processes().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('python');
    } catch {
      return false;
    }
  });
}

/** Finds the runner's reply descriptor from inside the step and writes `payload` to it. */
const WRITE_TO_REPLY_CHANNEL = (payload: string) =>
  [
    'import os, stat, sys, json',
    'frame = sys._getframe()',
    "while frame is not None and 'step_id' not in frame.f_locals:",
    '    frame = frame.f_back',
    "step_id = frame.f_locals['step_id']",
    // Node's stdio pipes are socket pairs; the runner duplicated stdin, stdout, stderr in that order,
    // so the second socket is its reply channel.
    'sockets = []',
    'for fd in range(3, 64):',
    '    try:',
    '        if stat.S_ISSOCK(os.fstat(fd).st_mode):',
    '            sockets.append(fd)',
    '    except OSError:',
    '        pass',
    `os.write(sockets[1], (${payload}).encode())`,
  ].join('\n');

describe.skipIf(Boolean(skip))('a warm runner session', () => {
  test('a second step reuses the runner process and finds the variables in memory', { timeout: 60_000 }, async () => {
    const { session } = await startSession();
    try {
      const first = await step(session, 'data = [1, 2]\nprint(id(data))');
      const processes = pythonProcesses(session);
      expect(processes).toHaveLength(1);
      const second = await step(session, 'data.append(3)\nprint(id(data), data)');
      expect(second.result.stdout).toBe(`${first.result.stdout.trim()} [1, 2, 3]\n`);
      expect(second.result.notes.join(' ')).not.toMatch(/checkpoint/);
      expect(pythonProcesses(session)).toStrictEqual(processes);
    } finally {
      await session.close('test done');
    }
  });

  test('kill -9 of the runner mid-step: the step is reported, the next session restores from the checkpoint', { timeout: 60_000 }, async () => {
    const { session, workspaceDir } = await startSession();
    await step(session, 'kept = "saved after step one"');
    const running = step(session, 'import time\nprint("working", flush=True)\ntime.sleep(60)');
    // Mid-step: once the step's captured stdout shows it is running.
    const printed = () => {
      try {
        return readdirSync(join(workspaceDir, '.oi', 'steps')).some((id) => readFileSync(join(workspaceDir, '.oi', 'steps', id, 'stdout.log'), 'utf8').includes('working'));
      } catch {
        return false;
      }
    };
    for (let attempt = 0; attempt < 400 && !printed(); attempt += 1) await new Promise((done) => setTimeout(done, 25));
    expect(printed(), 'the step is running').toBe(true);
    for (const pid of pythonProcesses(session)) process.kill(pid, 'SIGKILL');
    const { result, ended } = await running;
    expect(ended).toBeDefined();
    expect(result.error?.name).toBe('RunnerEnded');
    expect(result.error?.value).toMatch(/killed by SIGKILL/);
    expect(session.alive).toBe(false);
    const next = await startSession(workspaceDir);
    try {
      const restored = await step(next.session, 'print(kept)');
      expect(restored.result.stdout).toBe('saved after step one\n');
      expect(restored.result.notes[0]).toMatch(/restored from the checkpoint/);
    } finally {
      await next.session.close('test done');
    }
  });

  test('timeout inside a session: the runner stops the step and lives on; code that ignores it ends the session', { timeout: 60_000 }, async () => {
    const { session } = await startSession();
    try {
      await step(session, 'n = 7');
      const stopped = await step(session, 'import time\ntime.sleep(30)', { timeoutSec: 1 });
      expect(stopped.result.limit).toBe('timeout');
      expect(stopped.ended).toBeUndefined();
      expect((await step(session, 'print(n)')).result.stdout).toBe('7\n');
      const stuck = await step(session, 'import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\ntime.sleep(30)', { timeoutSec: 1 });
      expect(stuck.result.limit).toBe('timeout');
      expect(stuck.ended).toBeDefined();
      expect(session.alive).toBe(false);
    } finally {
      await session.close('test done');
    }
  });

  test('Stop inside a session: the step is cancelled and the session keeps its variables', { timeout: 60_000 }, async () => {
    const { session } = await startSession();
    try {
      await step(session, 'm = 5');
      const controller = new AbortController();
      const running = step(session, 'import time\nwhile True:\n    time.sleep(0.05)', { signal: controller.signal });
      setTimeout(() => controller.abort(), 500);
      await expect(running).rejects.toMatchObject({ code: 'cancelled' });
      expect(session.alive).toBe(true);
      expect((await step(session, 'print(m)')).result.stdout).toBe('5\n');
    } finally {
      await session.close('test done');
    }
  });

  test('a /dev/shm fill in a session hits the memory limit and ends the session', { timeout: 60_000 }, async () => {
    const { session } = await startSession();
    const { result, ended } = await step(session, 'block = b"x" * (64 * 1024 * 1024)\nfor i in range(32):\n    open(f"/dev/shm/fill-{i}", "wb").write(block)');
    expect(result.limit).toBe('memory');
    expect(result.error?.value).toMatch(/SANDBOX_MEMORY_MB=512/);
    expect(ended).toBeDefined();
    expect(session.alive).toBe(false);
  });

  test('a forged result with a negative duration: the controller keeps its own measure', { timeout: 60_000 }, async () => {
    const { session } = await startSession();
    try {
      const forged =
        'json.dumps({"type": "result", "id": step_id, "stdout": "forged", "stderr": "", "outputTruncated": False, "error": None, ' +
        '"durationMs": -100000000, "figures": [], "files": [{"path": "f", "change": "created", "size": 1}] * 20000, "unsaved": [], ' +
        '"notes": [], "restored": "memory"}) + "\\n"';
      const { result } = await step(session, `${WRITE_TO_REPLY_CHANNEL(forged)}\nimport time\ntime.sleep(0.5)`);
      expect(result.stdout, 'the forged reply reached the controller').toBe('forged');
      expect(result.durationMs).toBeGreaterThanOrEqual(0);
      expect(result.files.length).toBeLessThanOrEqual(500);
    } finally {
      await session.close('test done');
    }
  });

  test('a reply line over 1 MiB is refused with a clear message and ends the session', { timeout: 60_000 }, async () => {
    const { session } = await startSession();
    const { result, ended } = await step(session, `${WRITE_TO_REPLY_CHANNEL('"x" * (2 * 1024 * 1024)')}\nimport time\ntime.sleep(5)`);
    expect(result.error?.name).toBe('ResultRefused');
    expect(result.error?.value).toMatch(/larger than 1 MB and was refused/);
    expect(ended).toBeDefined();
  });
});
