import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { chooseCgroupLayout } from '../controller/sandbox/local/cgroup-layout.js';
import type { SessionCgroup } from '../controller/sandbox/local/session-cgroup.js';
import { JailHarness } from './helpers/jail-harness.js';

// Issue 14, finding 4: memory (tmpfs and /dev/shm included) and CPU are bounded per session with
// cgroups, v2 where the host has it, v1 where that is what is mounted.

const V1_MOUNTINFO = [
  '25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755',
  '26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw',
  '27 25 0:24 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory',
  '28 25 0:25 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids',
  '29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct',
  '30 25 0:27 / /sys/fs/cgroup/freezer rw,nosuid - cgroup cgroup rw,freezer',
].join('\n');
const V1_CGROUP = ['5:freezer:/', '4:cpu,cpuacct:/bot', '3:pids:/bot', '2:memory:/user/bot', '0::/bot'].join('\n');

describe('cgroup layout', () => {
  test('v2 with the memory, pids and cpu controllers: one directory under the own group', () => {
    const layout = chooseCgroupLayout('0::/system.slice/bot.service\n', '30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw', () => 'cpuset cpu io memory pids');
    expect(layout).toStrictEqual({ version: 2, ownDir: '/sys/fs/cgroup/system.slice/bot.service', isNamespaceRoot: false });
  });

  test('a hybrid host whose v2 has no controllers uses v1, one directory per controller (co-mounted cpu,cpuacct)', () => {
    const layout = chooseCgroupLayout(V1_CGROUP, V1_MOUNTINFO, () => '');
    expect(layout).toStrictEqual({
      version: 1,
      ownDirs: {
        freezer: '/sys/fs/cgroup/freezer/',
        cpu: '/sys/fs/cgroup/cpu,cpuacct/bot',
        cpuacct: '/sys/fs/cgroup/cpu,cpuacct/bot',
        pids: '/sys/fs/cgroup/pids/bot',
        memory: '/sys/fs/cgroup/memory/user/bot',
      },
    });
  });

  test('a container that sees part of the hierarchy mounted at its root; no usable hierarchy gives the reason', () => {
    const layout = chooseCgroupLayout('0::/docker/abc\n', '30 25 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw', () => 'memory pids cpu');
    expect(layout).toStrictEqual({ version: 2, ownDir: '/sys/fs/cgroup', isNamespaceRoot: false });
    expect(chooseCgroupLayout('0::/\n', '30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw', () => 'cpu io')).toBe(
      'cgroup v2 at /sys/fs/cgroup lacks memory, pids; no cgroup v1 hierarchy for memory, pids, cpu',
    );
  });
});

const harness = JailHarness.create({ cgroups: true });
const skip = typeof harness === 'string' ? harness : false;
afterAll(async () => {
  if (typeof harness !== 'string') await harness.close();
});

function memAvailableBytes(): number {
  return Number(/MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
}

/** Starts `count` busy Python loops inside a group; returns a function that kills them. */
function busyLoops(group: SessionCgroup, count: number): () => void {
  const { command, args } = group.enterCommand('/usr/bin/python3', [
    '-c',
    `import os\nfor _ in range(${count - 1}):\n    if os.fork() == 0:\n        break\nwhile True:\n    pass`,
  ]);
  const child = spawn(command, args, { stdio: 'ignore' });
  return () => void group.kill().then(() => child.kill('SIGKILL'));
}

describe.skipIf(Boolean(skip))('session cgroups against a hostile step', () => {
  const jail = harness as JailHarness;

  test('a /dev/shm fill under a 512 MB limit is killed at the limit; the host keeps its memory', async () => {
    const slot = await jail.slot({ egress: false });
    const group = slot.cgroup!;
    const availableBefore = memAvailableBytes();
    // 3 GB into /dev/shm in 64 MB files: tmpfs pages belong to no process, so RLIMIT_AS never saw them.
    const run = await jail.run(
      slot,
      'block = b"x" * (64 * 1024 * 1024)\nfor i in range(48):\n    open(f"/dev/shm/fill-{i}", "wb").write(block)\nprint("filled")',
    );
    expect(run.stdout, 'the fill must not complete').not.toContain('filled');
    const usage = group.usage();
    expect(usage.oomKills, 'the kernel OOM killer acted inside the group').toBeGreaterThanOrEqual(1);
    expect(usage.memoryPeakBytes ?? 0).toBeLessThanOrEqual(512 * 1024 * 1024);
    // The jail's tmpfs goes with its mount namespace: the pages come back once the kernel has torn it down, which
    // happens after the last process exited, a moment later on a busy machine (generous margin for other load).
    await vi.waitFor(() => expect(group.usage().memoryBytes).toBeLessThan(64 * 1024 * 1024), { timeout: 10_000, interval: 100 });
    expect(memAvailableBytes()).toBeGreaterThan(availableBefore - 1024 * 1024 * 1024);
  });

  test('a small /dev/shm file within the limit works (the limit is what stopped the fill)', async () => {
    const slot = await jail.slot({ egress: false });
    const run = await jail.run(slot, 'open("/dev/shm/small", "wb").write(b"x" * (100 * 1024 * 1024))\nprint("written")');
    expect(run.stdout).toBe('written\n');
    expect(slot.cgroup!.usage().oomKills).toBe(0);
  });

  test('32 busy processes in one group do not starve a single process in another group', async (context) => {
    const hog = await jail.slot({ egress: false });
    if (hog.cgroup!.usage().cpuMicros === undefined) context.skip('no CPU usage counter (cgroup v1 without cpuacct)');
    const other = await jail.slot({ egress: false });
    const stopHog = busyLoops(hog.cgroup!, 32);
    const stopOther = busyLoops(other.cgroup!, 1);
    try {
      const hogStart = hog.cgroup!.usage().cpuMicros!;
      const otherStart = other.cgroup!.usage().cpuMicros!;
      // A window of CPU time to compare; what is asserted is the ratio of the counters, not a speed.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const hogUsed = hog.cgroup!.usage().cpuMicros! - hogStart;
      const otherUsed = other.cgroup!.usage().cpuMicros! - otherStart;
      expect(hogUsed).toBeGreaterThan(0);
      // Equal weights: the lone process gets about as much as the 32 together (at 1/33 it would be starved).
      expect(otherUsed / hogUsed).toBeGreaterThan(0.3);
    } finally {
      stopHog();
      stopOther();
    }
  });

  test('a fork bomb stops at the group process limit and kill() empties the group, daemons included', async () => {
    const slot = await jail.slot({ egress: false, limits: { memoryBytes: 512 * 1024 * 1024, maxProcesses: 40, cpuWeight: 100 } });
    const group = slot.cgroup!;
    const running = jail.run(
      slot,
      [
        'import os, time',
        'count = 0',
        'for i in range(500):',
        '    try:',
        '        pid = os.fork()',
        '    except OSError:',
        '        break',
        '    if pid == 0:',
        '        os.setsid()',
        '        time.sleep(600)',
        '        os._exit(0)',
        '    count += 1',
        'print(count, flush=True)',
        'time.sleep(600)',
      ].join('\n'),
    );
    for (let attempt = 0; attempt < 200 && group.processes().length < 30; attempt += 1) await new Promise((done) => setTimeout(done, 25));
    expect(group.processes().length).toBeLessThanOrEqual(40);
    expect(await group.kill()).toBe(true);
    expect(group.processes()).toStrictEqual([]);
    const result = await running;
    expect(result.signal ?? result.code, 'the jail ended with its group').not.toBe(0);
  });
});
