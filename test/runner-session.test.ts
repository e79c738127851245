import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LIMITS, RunnerSession, barePython, hasModule, newWorkspace, removeWorkspaces } from './helpers/runner-process.js';

// runner.py --session (issue 13): the real runner on real Python, driven through its pipes as the
// controller drives it (docs/runner-protocol.md).

afterAll(removeWorkspaces);
const hasDill = hasModule('dill');
const bare = barePython();

describe('runner.py --session', () => {
  it('says ready, then keeps variables in memory between steps', async () => {
    const { session, ready } = await RunnerSession.start(newWorkspace());
    expect(ready).toEqual({ type: 'ready', restored: 'fresh', notes: [] });
    const first = await session.run('counter = 41\ndef bump(n):\n    return n + 1');
    expect(first.error).toBeNull();
    expect(first.restored).toBe('fresh');
    const second = await session.run('bump(counter)');
    expect(second.stdout).toBe('42\n');
    expect(second.restored).toBe('memory');
    expect(await session.exit()).toEqual({ code: 0, signal: null });
  });

  it('flushes a file the code keeps open, after every step, and leaves it open (gcsfuse writes a file to GCS on close)', async () => {
    const workspace = newWorkspace();
    const { session } = await RunnerSession.start(workspace);
    expect((await session.run("log = open('log.txt', 'w')\nlog.write('first')")).files).toStrictEqual([{ path: 'log.txt', change: 'created', size: 5 }]);
    expect(readFileSync(join(workspace, 'log.txt'), 'utf8'), 'Python buffered it; the runner flushed it').toBe('first');
    const second = await session.run("log.write(' second')\nprint(log.closed, log.tell())");
    expect(second.stdout).toBe('False 12\n');
    expect(readFileSync(join(workspace, 'log.txt'), 'utf8')).toBe('first second');
    await session.exit();
  });

  it('keeps assignments made before an exception (Jupyter semantics)', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const failed = await session.run('before = "kept"\nraise ValueError("boom")\nafter = 1');
    expect(failed.error).toMatchObject({ name: 'ValueError', value: 'boom' });
    const next = await session.run('print(before, "after" in globals())');
    expect(next.stdout).toBe('kept False\n');
    await session.exit();
  });

  it('sys.exit() ends the step, not the session', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const clean = await session.run('value = 7\nimport sys\nsys.exit()');
    expect(clean.error).toBeNull();
    const failing = await session.run('sys.exit(3)');
    expect(failing.error).toMatchObject({ name: 'SystemExit', value: '3' });
    expect((await session.run('value')).stdout).toBe('7\n');
    await session.exit();
  });

  it('input() fails at once with a clear message', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const result = await session.run('name = input("Your name? ")');
    expect(result.error?.name).toBe('StdinNotAvailable');
    expect(result.error?.value).toMatch(/input\(\) is not available/);
    expect(result.limit).toBeUndefined();
    await session.exit();
  });

  it('SIGINT stops a running `while True` step with a result, and the session serves the next step', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const id = session.start('spun = True\nprint("spinning", flush=True)\nwhile True:\n    pass');
    await session.waitForOutput(id, 'spinning');
    session.child.kill('SIGINT');
    const stopped = await session.result(id);
    expect(stopped.error).toMatchObject({ name: 'KeyboardInterrupt', value: 'The step was stopped (Stop).' });
    expect(stopped.stdout).toBe('spinning\n');
    expect((await session.run('spun')).stdout).toBe('True\n');
    session.child.kill('SIGINT'); // between steps: ignored
    expect((await session.run('print("still here")')).stdout).toBe('still here\n');
    await session.exit();
  });

  it('a stop line for the running step stops it, also inside a blocking call', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const id = session.start('import time\nprint("sleeping", flush=True)\ntime.sleep(1000)');
    await session.waitForOutput(id, 'sleeping');
    session.send({ type: 'stop', id: 'some-other-step' }); // not the running step: ignored
    session.send({ type: 'stop', id });
    const stopped = await session.result(id);
    expect(stopped.error?.name).toBe('KeyboardInterrupt');
    expect((await session.run('1 + 1')).stdout).toBe('2\n');
    await session.exit();
  });

  it('a Stop that arrives while the step is still being prepared stops it as soon as its code starts', async () => {
    const workspace = newWorkspace();
    const { session: first } = await RunnerSession.start(workspace);
    const { session: second } = await RunnerSession.start(workspace);
    // A big checkpoint written by the other session: the next step of `first` reloads it before its code runs.
    await second.run('blob = list(range(3_000_000))');
    const id = first.start('print("the code ran")\nwhile True:\n    pass');
    first.send({ type: 'stop', id });
    const stopped = await first.result(id);
    expect(stopped.error?.name).toBe('KeyboardInterrupt');
    expect(stopped.restored).toBe('checkpoint');
    await Promise.all([first.exit(), second.exit()]);
  });

  it('the step timeout (SIGALRM) raises StepTimeout; variables made before it survive', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const result = await session.run('made = "before timeout"\nwhile True:\n    pass', { timeoutSec: 1 });
    expect(result.limit).toBe('timeout');
    expect(result.error).toMatchObject({ name: 'StepTimeout', value: 'The step was stopped after 1 s (STEP_TIMEOUT_SEC).' });
    // Code of an earlier step that ignored SIGALRM does not disable the timeout of the next one.
    await session.run('import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)');
    const again = await session.run('while True:\n    pass', { timeoutSec: 1 });
    expect(again.limit).toBe('timeout');
    expect((await session.run('made')).stdout).toBe("'before timeout'\n");
    await session.exit();
  });

  it('the CPU limit is per step although RLIMIT_CPU counts the whole process', async () => {
    const limits = { ...LIMITS, cpuSec: 1 };
    const { session } = await RunnerSession.start(newWorkspace());
    for (let step = 0; step < 2; step += 1) {
      const hog = await session.run('while True:\n    pass', { limits, timeoutSec: 120 });
      expect(hog.limit).toBe('cpu');
      expect(hog.error?.value).toMatch(/SANDBOX_CPU_SEC=1 s/);
    }
    // The session has used more than 2 s of CPU by now; a step using half a second still runs.
    const modest = await session.run('import time\nstart = time.process_time()\nwhile time.process_time() - start < 0.5:\n    pass\nprint("done")', {
      limits,
      timeoutSec: 120,
    });
    expect(modest.error).toBeNull();
    expect(modest.stdout).toBe('done\n');
    await session.exit();
  });

  it('code stuck in C past the CPU limit is ended by the kernel (SIGXCPU): the session dies, as the controller expects', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    session.start('sum(range(10 ** 13))', { limits: { ...LIMITS, cpuSec: 1 }, timeoutSec: 600 });
    expect(await session.exited).toEqual({ code: null, signal: 'SIGXCPU' });
  }, 120_000);

  it.skipIf(!hasDill)('kill -9 mid-step: a new session restores from the checkpoint and says so', async () => {
    const workspace = newWorkspace();
    const { session } = await RunnerSession.start(workspace);
    await session.run('import json\nsaved = {"rows": 3}\ndef describe():\n    return f"{saved[\'rows\']} rows"');
    const id = session.start('lost = 1\nprint("running", flush=True)\nwhile True:\n    pass');
    await session.waitForOutput(id, 'running');
    session.kill();
    await session.exited;
    const { session: next, ready } = await RunnerSession.start(workspace);
    expect(ready.restored).toBe('checkpoint');
    const result = await next.run('print(describe(), json.dumps(saved), "lost" in globals())');
    expect(result.error).toBeNull();
    expect(result.stdout).toBe('3 rows {"rows": 3} False\n');
    expect(result.restored).toBe('checkpoint');
    expect((await next.run('1')).restored).toBe('memory');
    await next.exit();
  });

  it('two sessions on one workspace: the one whose memory is stale reloads the checkpoint', async () => {
    const workspace = newWorkspace();
    const { session: first } = await RunnerSession.start(workspace);
    await first.run('shared = "from the first"');
    const { session: second, ready } = await RunnerSession.start(workspace);
    expect(ready.restored).toBe('checkpoint');
    const written = await second.run('shared = "from the second"');
    expect(written.restored).toBe('checkpoint');
    const stale = await first.run('shared');
    expect(stale.stdout).toBe("'from the second'\n");
    expect(stale.restored).toBe('checkpoint');
    expect((await first.run('shared')).restored).toBe('memory');
    await Promise.all([first.exit(), second.exit()]);
  });

  it('refuses malformed requests with an error line and keeps serving', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    session.child.stdin.write('not json\n');
    expect(await session.next()).toEqual({ type: 'error', message: 'request is not JSON' });
    session.send({ type: 'step', id: 'bad id!', code: '1' });
    expect((await session.next()).type).toBe('error');
    session.send({ type: 'step', id: 'no-limits', code: '1', timeoutSec: 5 });
    expect(await session.next()).toMatchObject({ type: 'error', id: 'no-limits' });
    expect((await session.run('2')).stdout).toBe('2\n');
    await session.exit();
  });

  it('a step that replaces the runner\'s folders with a file or a symlink does not break the next step', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    await session.run('import os, shutil\nshutil.rmtree(".oi/steps", ignore_errors=True)\nopen(".oi/steps", "w").write("not a folder")');
    expect((await session.run('print("next")')).stdout).toBe('next\n');
    await session.run('import os, shutil\nshutil.rmtree(".oi")\nos.symlink("/tmp", ".oi")');
    expect((await session.run('print("and the one after")')).stdout).toBe('and the one after\n');
    await session.exit();
  });

  it('ends at EOF on stdin', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    session.child.stdin.end();
    expect(await session.exited).toEqual({ code: 0, signal: null });
  });

  it.skipIf(process.getuid?.() !== 0)('--user: a uid that may not traverse the parents still finds its way back after the code changes directory', async () => {
    const parent = newWorkspace();
    chmodSync(parent, 0o700); // root's: the thread's uid cannot pass through it
    const workspace = join(parent, 'thread');
    mkdirSync(workspace);
    const uid = 55_000 + Math.floor(Math.random() * 1000);
    chownSync(workspace, uid, uid);
    const { session } = await RunnerSession.start(workspace, { args: ['--user', `${uid}:${uid}`] });
    const moved = await session.run('import os\nos.chdir("/")\nos.getcwd()');
    expect(moved.stdout).toBe("'/'\n");
    const back = await session.run('open("here.txt", "w").write("x")\nos.getuid(), os.getcwd() == "/"');
    expect(back.stdout).toBe(`(${uid}, False)\n`);
    expect(back.files).toEqual([{ path: 'here.txt', change: 'created', size: 1 }]);
    const timedOut = await session.run('os.chdir("/")\nwhile True:\n    pass', { timeoutSec: 1 });
    expect(timedOut.limit).toBe('timeout');
    expect(existsSync(join(workspace, 'here.txt'))).toBe(true);
    await session.exit();
  });

  it.skipIf(bare === undefined)('works on a bare Python without pandas or dill', async () => {
    const workspace = newWorkspace();
    const { session, ready } = await RunnerSession.start(workspace, { python: bare! });
    expect(ready.restored).toBe('fresh');
    const first = await session.run('import math as m\nnumber = 4\ndef twice(x):\n    return 2 * x\ndisplay(m.sqrt(number))');
    expect(first.stdout).toBe('2.0\n');
    expect(first.displays).toEqual([]);
    expect(first.unsaved).toEqual(['twice']); // functions need dill for the checkpoint, not for memory
    expect((await session.run('twice(number)')).stdout).toBe('8\n');
    await session.exit();
    const { session: next, ready: again } = await RunnerSession.start(workspace, { python: bare! });
    expect(again.restored).toBe('checkpoint');
    expect((await next.run('m.floor(number + 0.5), "twice" in globals()')).stdout).toBe('(4, False)\n');
    await next.exit();
  });
});
