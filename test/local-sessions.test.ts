import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../controller/logger.js';
import { LocalSandbox, type LocalSandboxOptions } from '../controller/sandbox/local/local-sandbox.js';
import type { ResourceLimits, SandboxSession, StepResult } from '../controller/sandbox/sandbox.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import type { Workspace } from '../controller/workspace/workspace.js';
import { jailIfAvailable } from './helpers/jail-available.js';

// Issue 13 (local): warm sessions through the Sandbox seam, with the real runner on real Python, in the
// jail this machine allows. Processes are counted on the host.

const LIMITS: ResourceLimits = { memoryMb: 1024, cpuSec: 60, maxProcesses: 64, maxFileMb: 100 };
const dataDir = mkdtempSync(join(tmpdir(), 'local-sessions-'));
const store = new LocalWorkspaceStore(dataDir);
let threadCounter = 0;
const newThread = (): Workspace => store.open({ team: 'T1', channel: 'C1', threadTs: `1700000300.${String(++threadCounter).padStart(6, '0')}` });
const dirOf = (workspace: Workspace) => (workspace.location as { dir: string }).dir;

const sandboxes: LocalSandbox[] = [];
function makeSandbox(options: Partial<LocalSandboxOptions> = {}): LocalSandbox {
  const sandbox = new LocalSandbox({ network: 'off', isolation: jailIfAvailable(), limits: LIMITS, logger: silentLogger, searchPath: process.env.PATH, ...options });
  sandboxes.push(sandbox);
  return sandbox;
}
afterAll(async () => {
  await Promise.all(sandboxes.map((sandbox) => sandbox.close()));
  rmSync(dataDir, { recursive: true, force: true });
});

const run = (session: SandboxSession, code: string, options: { timeoutSec?: number; signal?: AbortSignal } = {}): Promise<StepResult> =>
  session.run({ language: 'python', code, timeoutSec: options.timeoutSec ?? 30 }, { signal: options.signal });

/** Host pids of the runner processes (python, session mode by default) working in this thread's workspace. */
function runnersOf(workspace: Workspace, mode: '--session' | '--step' = '--session'): number[] {
  const inode = statSync(dirOf(workspace)).ino;
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((pid) => {
      try {
        const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return command[0]!.includes('python') && command.includes(mode) && statSync(`/proc/${pid}/cwd`).ino === inode;
      } catch {
        return false;
      }
    });
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let attempt = 0; attempt < 400 && !condition(); attempt += 1) await new Promise((done) => setTimeout(done, 25));
  expect(condition(), what).toBe(true);
}

describe('warm local sessions', () => {
  test('a second step reuses the session: one runner process, variables kept in memory', { timeout: 60_000 }, async () => {
    const sandbox = makeSandbox();
    const thread = newThread();
    const session = sandbox.session(thread);
    const first = await run(session, 'frame = {"rows": [1, 2]}\nprint(id(frame))');
    const runners = runnersOf(thread);
    expect(runners).toHaveLength(1);
    const second = await run(session, 'frame["rows"].append(3)\nprint(id(frame), frame["rows"])');
    expect(second.stdout).toBe(`${first.stdout.trim()} [1, 2, 3]\n`);
    expect(runnersOf(thread)).toStrictEqual(runners);
    await session.release();
    // The next turn of the thread finds the same session.
    expect((await run(sandbox.session(thread), 'print(len(frame["rows"]))')).stdout).toBe('3\n');
    expect(runnersOf(thread)).toStrictEqual(runners);
  });

  test('two threads never share a session, even running at once', { timeout: 60_000 }, async () => {
    const sandbox = makeSandbox();
    const [one, two] = [newThread(), newThread()];
    await Promise.all([run(sandbox.session(one), 'owner = "one"'), run(sandbox.session(two), 'owner = "two"')]);
    const [seenOne, seenTwo] = await Promise.all([run(sandbox.session(one), 'print(owner)'), run(sandbox.session(two), 'print(owner)')]);
    expect([seenOne.stdout, seenTwo.stdout]).toStrictEqual(['one\n', 'two\n']);
    expect(runnersOf(one)).toHaveLength(1);
    expect(runnersOf(two)).toHaveLength(1);
    expect(runnersOf(one)[0]).not.toBe(runnersOf(two)[0]);
  });

  test('an idle session ends after SANDBOX_SESSION_IDLE_SEC; the next step restores from the checkpoint', { timeout: 60_000 }, async () => {
    const sandbox = makeSandbox({ sessionIdleSec: 1 });
    const thread = newThread();
    await run(sandbox.session(thread), 'kept = 42');
    expect(runnersOf(thread)).toHaveLength(1);
    await until(() => sandbox.liveSessions === 0 && runnersOf(thread).length === 0, 'the idle session ended');
    const next = await run(sandbox.session(thread), 'print(kept)');
    expect(next.stdout).toBe('42\n');
    expect(next.notes[0]).toMatch(/restored from the checkpoint/);
  });

  test('at SANDBOX_MAX_SESSIONS the least recently used session is ended first', { timeout: 90_000 }, async () => {
    const sandbox = makeSandbox({ maxSessions: 2 });
    const threads = [newThread(), newThread(), newThread()];
    await run(sandbox.session(threads[0]!), 'name = "first"');
    await run(sandbox.session(threads[1]!), 'name = "second"');
    await run(sandbox.session(threads[0]!), 'print(name)'); // the second thread is now the least recently used
    await run(sandbox.session(threads[2]!), 'name = "third"');
    expect(sandbox.liveSessions).toBe(2);
    await until(() => runnersOf(threads[1]!).length === 0, "the second thread's runner is gone");
    expect(runnersOf(threads[0]!)).toHaveLength(1);
    const back = await run(sandbox.session(threads[1]!), 'print(name)');
    expect(back.stdout).toBe('second\n');
    expect(back.notes[0]).toMatch(/restored from the checkpoint/);
    expect(sandbox.liveSessions).toBe(2);
  });

  test('Stop and timeout inside a session end the step; the session and its variables live on', { timeout: 60_000 }, async () => {
    const sandbox = makeSandbox();
    const thread = newThread();
    const session = sandbox.session(thread);
    await run(session, 'total = 10');
    const runners = runnersOf(thread);
    const timedOut = await run(session, 'import time\ntime.sleep(60)', { timeoutSec: 1 });
    expect(timedOut.limit).toBe('timeout');
    const controller = new AbortController();
    const stopped = run(session, 'import time\nwhile True:\n    time.sleep(0.05)', { signal: controller.signal });
    await until(() => runnersOf(thread).length === 1, 'the session runs');
    setTimeout(() => controller.abort(), 300);
    await expect(stopped).rejects.toMatchObject({ code: 'cancelled' });
    expect((await run(session, 'print(total)')).stdout).toBe('10\n');
    expect(runnersOf(thread)).toStrictEqual(runners);
  });

  test('kill -9 of the runner mid-step: the step is reported and the next step works from the checkpoint', { timeout: 60_000 }, async () => {
    const sandbox = makeSandbox();
    const thread = newThread();
    const session = sandbox.session(thread);
    await run(session, 'survivor = "from the checkpoint"');
    const running = run(session, 'import time\nprint("started", flush=True)\ntime.sleep(60)');
    await until(() => {
      try {
        return readdirSync(join(dirOf(thread), '.oi', 'steps')).length > 0;
      } catch {
        return false;
      }
    }, 'the step started');
    for (const pid of runnersOf(thread)) process.kill(pid, 'SIGKILL');
    const reported = await running;
    expect(reported.error?.name).toBe('RunnerEnded');
    expect(reported.error?.value).toMatch(/killed by SIGKILL/);
    const next = await run(session, 'print(survivor)');
    expect(next.stdout).toBe('from the checkpoint\n');
    expect(next.notes[0]).toMatch(/restored from the checkpoint/);
  });

  test('no process a step started is left when its result is read', { timeout: 60_000 }, async () => {
    const sandbox = makeSandbox();
    const marker = `${process.pid}.7331`;
    const result = await run(
      sandbox.session(newThread()),
      `import subprocess, os\nsubprocess.Popen(["sleep", "${marker}"], start_new_session=True)\nif os.fork() == 0:\n    os.setsid()\n    os.execvp("sleep", ["sleep", "${marker}"])\nprint("spawned")`,
    );
    expect(result.stdout).toBe('spawned\n');
    const sleepers = readdirSync('/proc').filter((name) => {
      try {
        return /^\d+$/.test(name) && readFileSync(`/proc/${name}/cmdline`, 'utf8') === `sleep\0${marker}\0`;
      } catch {
        return false;
      }
    });
    expect(sleepers).toStrictEqual([]);
  });

  test('SANDBOX_SESSION=off starts one runner per step; variables come back from the checkpoint', { timeout: 60_000 }, async () => {
    const sandbox = makeSandbox({ session: false });
    const thread = newThread();
    const session = sandbox.session(thread);
    await run(session, 'value = [1]');
    expect(runnersOf(thread, '--step'), 'the runner ended with its step').toStrictEqual([]);
    const second = await run(session, 'value.append(2)\nprint(value)');
    expect(second.stdout).toBe('[1, 2]\n');
    expect(runnersOf(thread, '--step')).toStrictEqual([]);
    expect(sandbox.liveSessions).toBe(0);
  });
});
