import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../controller/logger.js';
import { bubblewrapArguments } from '../controller/sandbox/local/bubblewrap.js';
import { detectCgroupLayout } from '../controller/sandbox/local/cgroup-layout.js';
import { CgroupParent } from '../controller/sandbox/local/cgroup-parent.js';
import { launchJail } from '../controller/sandbox/local/jail-launch.js';
import { findNetworkTools, JAIL_ADDRESSES } from '../controller/sandbox/local/jail-network.js';
import { JailSlotPool } from '../controller/sandbox/local/jail-slots.js';
import { SeccompFilter } from '../controller/sandbox/local/seccomp-filter.js';
import { handOverTopLevel } from '../controller/sandbox/local/step-budget.js';
import { freeDiskBytes } from '../controller/sandbox/local/workspace-quota.js';
import { resolvePython } from '../controller/sandbox/local/python.js';
import { isRoot } from '../controller/sandbox/local/sandbox-user.js';
import { median, timed } from './measure.js';
import type { FigureRow } from './report.js';

/**
 * Issue 14's figure: what the new protections (cgroup, own network namespace with pasta, seccomp,
 * setpriv's capability drop) add to a cold step, side by side with today's jail, and to a warm
 * session step. Method: the same `python3 -c pass` in
 *   today       bwrap with today's arguments (--unshare-net), as root
 *   protected   a slot taken from a warm pool (cgroup, namespace with pasta, and the jail's first
 *               process prepared ahead), which execs bwrap --seccomp → setpriv → python: everything a
 *               cold step waits for (its slot is released after its result: reported on its own line)
 *   no egress   the same with SANDBOX_NETWORK=off (cgroup only, bwrap's own empty namespace)
 * interleaved, median over repetitions. Reported beside them: what preparing a slot costs (off the
 * step's path, in the background) and what a warm session step pays for the protections (the cgroup
 * counters read after the step, statfs for the quota budget).
 */

const RUNNER_DIR = fileURLToPath(new URL('../sandbox-image/', import.meta.url));
const ENVIRONMENT = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/tmp', LANG: 'C.UTF-8' };
const UID = 1_000_321;

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`jail exited ${code}`))));
  });
}

export async function jailProtectionsBenchmark(options: { repetitions: number }): Promise<{ rows: FigureRow[]; details: unknown }> {
  if (!isRoot()) throw new Error('needs root (drop-root jail, cgroups)');
  const python = resolvePython(undefined, process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin');
  const layout = detectCgroupLayout();
  const tools = findNetworkTools(process.env.PATH ?? '/usr/bin:/bin');
  const seccomp = SeccompFilter.build();
  if (typeof layout === 'string' || typeof tools === 'string' || typeof seccomp === 'string') {
    throw new Error(`protections unavailable: ${[layout, tools, seccomp].filter((item) => typeof item === 'string').join('; ')}`);
  }
  const cgroups = CgroupParent.prepare(layout);
  const workspace = mkdtempSync(join(tmpdir(), 'oi-bench-jail-'));
  const runDir = mkdtempSync(join(tmpdir(), 'oi-bench-run-'));
  chownSync(workspace, UID, UID);
  writeFileSync(join(runDir, 'resolv.conf'), `nameserver ${JAIL_ADDRESSES.dns}\n`);
  const limits = { memoryBytes: 2048 * 1024 * 1024, maxProcesses: 272, cpuWeight: 100 };
  const common = { cgroups, limits, runDir, seccompProgram: seccomp.program, environment: ENVIRONMENT, logger: silentLogger };
  const pools = {
    egress: new JailSlotPool({ ...common, network: { tools, rootless: false }, spare: 1 }),
    off: new JailSlotPool({ ...common, spare: 1 }),
  };
  const base = bubblewrapArguments({ mode: 'drop-root', workspaceDir: workspace, runnerDir: RUNNER_DIR, python, network: false, tmpSizeMb: 2048, environment: ENVIRONMENT });
  try {
    /** take → jail → exit: what a cold step waits for. The release (kill the group, stop pasta) runs after its result. */
    const releases: number[] = [];
    const protectedRun = async (pool: JailSlotPool) => {
      await pool.ready(); // the pool refills between steps, as it does between a thread's turns
      const { ms, value: slot } = await timed(async () => {
        const taken = await pool.take();
        const child = launchJail({
          bubblewrapArgs: base,
          command: python.executable,
          args: ['-c', 'pass'],
          slot: taken,
          dropTo: { uid: UID, gid: UID },
          resolvConf: taken.egress ? join(runDir, 'resolv.conf') : undefined,
        });
        child.stdin!.end();
        await exited(child);
        return taken;
      });
      if (slot.egress) releases.push((await timed(() => pool.release(slot))).ms);
      else await pool.release(slot);
      return ms;
    };
    const variants: Record<string, () => Promise<number>> = {
      today: async () => (await timed(() => exited(spawn('bwrap', [...base, python.executable, '-c', 'pass'], { stdio: 'ignore', env: ENVIRONMENT })))).ms,
      protected: () => protectedRun(pools.egress),
      noEgress: () => protectedRun(pools.off),
      prepareSlot: async () => {
        const pool = new JailSlotPool({ ...common, network: { tools, rootless: false }, spare: 0 });
        const { ms, value: slot } = await timed(() => pool.take());
        await pool.release(slot);
        return ms;
      },
      warmStepChecks: async () => {
        const slot = await pools.off.take();
        const rounds = 20; // one round is far below the timer's resolution on a busy machine
        const { ms } = await timed(async () => {
          for (let round = 0; round < rounds; round++) {
            slot.cgroup!.oomKills();
            slot.cgroup!.processes();
            freeDiskBytes(workspace);
            await handOverTopLevel(workspace, { uid: UID, gid: UID });
          }
        });
        await pools.off.release(slot);
        return ms / rounds;
      },
    };
    const samples: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
    for (let repetition = 0; repetition <= options.repetitions; repetition++) {
      for (const [name, run] of Object.entries(variants)) {
        const ms = await run();
        if (repetition > 0) samples[name]!.push(ms); // repetition 0 warms caches
        // A take() schedules its pool's refill a little later: let it run now, so that it lands in
        // no other variant's measurement (it would slow today's bwrap as much as the jails).
        await Promise.all([pools.egress.ready(), pools.off.ready()]);
      }
    }
    const m = Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)])) as Record<string, number>;
    const figure = '14 jail protections';
    const added = m.protected! - m.today!;
    const rows: FigureRow[] = [
      { key: 'jail.coldStep', figure, measure: 'cold step ms: jail with cgroup, netns (pasta), seccomp, setpriv', ours: m.protected!, baseline: m.today!, baselineName: "today's bwrap" },
      { key: 'jail.coldAdded', figure, measure: 'cold step (or session start): added ms', ours: added, target: '<= +15 ms', met: added <= 15 },
      { key: 'jail.coldNoEgress', figure, measure: 'cold step ms, SANDBOX_NETWORK=off', ours: m.noEgress!, baseline: m.today!, baselineName: "today's bwrap" },
      { key: 'jail.warmStep', figure, measure: 'warm session step: added ms (cgroup counters, statfs, top-level hand-over)', ours: m.warmStepChecks!, target: 'nothing (< 1 ms)', met: m.warmStepChecks! < 1 },
      { key: 'jail.release', figure, measure: 'slot release ms (after the result, not on its path)', ours: median(releases.slice(1)) },
      { key: 'jail.prepareSlot', figure, measure: 'slot preparation ms (ahead of time, not on a step path)', ours: m.prepareSlot! },
    ];
    return { rows, details: { medianMs: m, repetitions: options.repetitions, stack: tools.stack, cgroups: cgroups.describe() } };
  } finally {
    await pools.egress.close();
    await pools.off.close();
    await cgroups.close();
    rmSync(workspace, { recursive: true, force: true });
    rmSync(runDir, { recursive: true, force: true });
  }
}
