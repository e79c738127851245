import { spawn, spawnSync } from 'node:child_process';
import { chownSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import {
  PYTHON,
  RunnerSession,
  isGone,
  newWorkspace,
  removeWorkspaces,
  runOneShot,
  sleepMarker,
  sleepersWith,
} from './helpers/runner-process.js';

// Issue 14, finding 8: no process outlives its step. The checks run the moment the result arrives,
// without waiting: the runner must have ended every process before it wrote the result.

afterAll(removeWorkspaces);

/**
 * A step that leaves four kinds of processes behind: a child, a detached grandchild, a forked daemon
 * that execs, and a forked Python child. It prints the Python child's pid and whether the three
 * sleepers were all running when it ended (so "gone" cannot pass because they never started).
 */
function leaveProcessesBehind(markers: string[]): string {
  return [
    'import os, subprocess',
    `child = subprocess.Popen(["sleep", "${markers[0]}"])`,
    `subprocess.Popen("setsid sleep ${markers[1]} &", shell=True).wait()`,
    'daemon = os.fork()',
    'if daemon == 0:',
    '    os.setsid()',
    '    if os.fork() == 0:',
    `        os.execvp("sleep", ["sleep", "${markers[2]}"])`,
    '    os._exit(0)',
    'python_child = os.fork()',
    'if python_child == 0:',
    '    import time',
    '    time.sleep(1000)',
    'import time',
    'def running(marker):',
    '    for pid in os.listdir("/proc"):',
    '        try:',
    '            if open(f"/proc/{pid}/cmdline", "rb").read() == b"sleep\\0" + marker.encode() + b"\\0":',
    '                return True',
    '        except OSError:  # gone meanwhile, or not a process',
    '            pass',
    '    return False',
    'deadline = time.monotonic() + 30',
    `while time.monotonic() < deadline and not all(running(marker) for marker in ${JSON.stringify(markers)}):`,
    '    time.sleep(0.01)',
    `print(python_child, all(running(marker) for marker in ${JSON.stringify(markers)}))`,
  ].join('\n');
}

function expectStartedAndGone(stdout: string): void {
  const [pythonChild, allRunning] = stdout.trim().split(' ');
  expect(allRunning).toBe('True');
  expect(isGone(Number(pythonChild))).toBe(true);
}

const bwrapPrefix = ['bwrap', '--unshare-pid', '--die-with-parent', '--bind', '/', '/', '--proc', '/proc', '--dev', '/dev'];
const bwrapWorks = spawnSync(bwrapPrefix[0]!, [...bwrapPrefix.slice(1), PYTHON, '-c', 'print(1)'], { encoding: 'utf8' }).stdout === '1\n';
const isRoot = process.getuid?.() === 0;

describe('no process outlives its step', () => {
  it('session without a pid namespace: the step’s children, detached grandchildren and daemons are gone', async () => {
    const { session, ready } = await RunnerSession.start(newWorkspace());
    expect(ready.notes).toEqual([]);
    const markers = [sleepMarker(), sleepMarker(), sleepMarker()];
    const result = await session.run(leaveProcessesBehind(markers));
    expect(result.error).toBeNull();
    for (const marker of markers) expect(sleepersWith(marker)).toEqual([]);
    expectStartedAndGone(result.stdout);
    expect((await session.run('child.poll() is not None')).stdout).toBe('True\n');
    await session.exit();
  });

  it('one-shot mode: the same, before result.json is written', () => {
    const markers = [sleepMarker(), sleepMarker(), sleepMarker()];
    const { result } = runOneShot(newWorkspace(), leaveProcessesBehind(markers));
    expect(result.error).toBeNull();
    for (const marker of markers) expect(sleepersWith(marker)).toEqual([]);
    expectStartedAndGone(result.stdout);
  });

  it('processes that are not the step’s are never touched', async () => {
    const outsider = sleepMarker();
    const sibling = spawn('sleep', [outsider], { stdio: 'ignore' });
    try {
      const { session } = await RunnerSession.start(newWorkspace());
      const result = await session.run('import subprocess\nsubprocess.Popen(["sleep", "1000"])\nprint("ok")');
      expect(result.stdout).toBe('ok\n');
      expect(sleepersWith(outsider)).toEqual([String(sibling.pid)]);
      await session.exit();
    } finally {
      sibling.kill('SIGKILL');
    }
  });

  it.skipIf(!isRoot)('--own-pid-namespace outside a private pid namespace is refused: no kill(-1) reaches other processes of the uid', async () => {
    // Dropped to a uid of its own, a wrong kill(-1) could only reach that uid's processes: the sibling below.
    const uid = 54_000 + Math.floor(Math.random() * 1000);
    const workspace = newWorkspace();
    chownSync(workspace, uid, uid);
    const outsider = sleepMarker();
    const sibling = spawn('sleep', [outsider], { stdio: 'ignore', uid, gid: uid });
    try {
      const { session, ready } = await RunnerSession.start(workspace, { args: ['--own-pid-namespace', '--user', `${uid}:${uid}`] });
      expect(ready.notes.join('\n')).toMatch(/--own-pid-namespace was given but the runner is not a child of its pid namespace's init/);
      const marker = sleepMarker();
      const result = await session.run(`import subprocess\nsubprocess.Popen(["sleep", "${marker}"])\nprint("ok")`);
      expect(result.stdout).toBe('ok\n');
      expect(sleepersWith(marker)).toEqual([]);
      expect(sleepersWith(outsider)).toEqual([String(sibling.pid)]);
      await session.exit();
    } finally {
      sibling.kill('SIGKILL');
    }
  });

  it.skipIf(!bwrapWorks)('inside a private pid namespace (bubblewrap): kill(-1) ends everything of the uid before the result', async () => {
    const { session, ready } = await RunnerSession.start(newWorkspace(), { prefix: bwrapPrefix, args: ['--own-pid-namespace'] });
    expect(ready.notes).toEqual([]);
    const markers = [sleepMarker(), sleepMarker(), sleepMarker()];
    const result = await session.run(leaveProcessesBehind(markers));
    expect(result.error).toBeNull();
    expect(result.stdout.trim().split(' ')[1]).toBe('True'); // its pid is the namespace's: checked from inside below
    for (const marker of markers) expect(sleepersWith(marker)).toEqual([]);
    const inside = await session.run('import os\nsorted(int(p) for p in os.listdir("/proc") if p.isdigit())');
    expect(inside.stdout).toBe('[1, 2]\n'); // bubblewrap's init and the runner: nothing else
    await session.exit();
  });
});
