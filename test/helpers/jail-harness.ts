import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { silentLogger } from '../../controller/logger.js';
import { bubblewrapArguments } from '../../controller/sandbox/local/bubblewrap.js';
import { resolvePython, type PythonInfo } from '../../controller/sandbox/local/python.js';
import { isRoot } from '../../controller/sandbox/local/sandbox-user.js';
import { detectCgroupLayout } from '../../controller/sandbox/local/cgroup-layout.js';
import { CgroupParent } from '../../controller/sandbox/local/cgroup-parent.js';
import { launchJail } from '../../controller/sandbox/local/jail-launch.js';
import { findNetworkTools, JAIL_ADDRESSES, type NetworkTools } from '../../controller/sandbox/local/jail-network.js';
import { JailSlotPool, type JailSlot } from '../../controller/sandbox/local/jail-slots.js';
import { SeccompFilter } from '../../controller/sandbox/local/seccomp-filter.js';
import type { CgroupLimits } from '../../controller/sandbox/local/session-cgroup.js';

/**
 * The kernel-level protections of issue 14, put together the way the local sandbox does, for tests
 * that attack them directly: Python code run in a drop-root jail (bwrap, setpriv to an unprivileged
 * uid) inside a slot (cgroup, network namespace), with the seccomp filter.
 */

export const JAIL_UID = 1_000_123;
export const DEFAULT_TEST_LIMITS: CgroupLimits = { memoryBytes: 512 * 1024 * 1024, maxProcesses: 64, cpuWeight: 100 };

export interface JailRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export class JailHarness {
  readonly runDir = mkdtempSync(join(tmpdir(), 'jail-harness-'));
  readonly workspace = mkdtempSync(join(tmpdir(), 'jail-workspace-'));
  private readonly pools: JailSlotPool[] = [];

  private constructor(
    readonly python: PythonInfo,
    readonly cgroups: CgroupParent | undefined,
    readonly seccomp: SeccompFilter | undefined,
    readonly tools: NetworkTools | undefined,
  ) {
    chownSync(this.workspace, JAIL_UID, JAIL_UID);
    writeFileSync(join(this.runDir, 'resolv.conf'), `nameserver ${JAIL_ADDRESSES.dns}\n`, { mode: 0o644 });
  }

  /** The harness, or why this machine cannot run it (the tests are then skipped with that reason). */
  static create(needs: { cgroups?: boolean; network?: boolean; seccomp?: boolean } = {}): JailHarness | string {
    if (!isRoot()) return 'needs root (drop-root jail, cgroups)';
    const layout = detectCgroupLayout();
    if (needs.cgroups && typeof layout === 'string') return `no usable cgroups: ${layout}`;
    const tools = findNetworkTools(process.env.PATH ?? '/usr/bin:/bin');
    if (needs.network && typeof tools === 'string') return `no network stack: ${tools}`;
    const seccomp = SeccompFilter.build();
    if (needs.seccomp && typeof seccomp === 'string') return `no seccomp filter: ${seccomp}`;
    let python: PythonInfo;
    try {
      python = resolvePython(undefined, process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin');
    } catch (error) {
      return (error as Error).message;
    }
    const cgroups = typeof layout === 'string' ? undefined : CgroupParent.prepare(layout);
    return new JailHarness(python, cgroups, typeof seccomp === 'string' ? undefined : seccomp, typeof tools === 'string' ? undefined : tools);
  }

  /** A slot (cgroup; namespace with egress) from a pool of its own. */
  async slot(options: { egress: boolean; limits?: CgroupLimits; cgroup?: boolean; tools?: NetworkTools; seccomp?: boolean }): Promise<JailSlot> {
    const pool = new JailSlotPool({
      cgroups: options.cgroup === false ? undefined : this.cgroups,
      limits: options.limits ?? DEFAULT_TEST_LIMITS,
      network: options.egress ? { tools: options.tools ?? this.tools!, rootless: false } : undefined,
      seccompProgram: options.seccomp === false ? undefined : this.seccomp?.program,
      environment: { PATH: '/usr/bin:/bin' },
      runDir: this.runDir,
      spare: 0,
      logger: silentLogger,
    });
    this.pools.push(pool);
    return pool.take();
  }

  /** Runs Python code in a jail in `slot` (the filter is the slot's); resolves when the jail's first process exits. */
  run(slot: JailSlot, code: string): Promise<JailRun> {
    const base = bubblewrapArguments({
      mode: 'drop-root',
      workspaceDir: this.workspace,
      runnerDir: resolve('sandbox-image'),
      python: this.python,
      network: false,
      tmpSizeMb: 64,
      environment: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/tmp', LANG: 'C.UTF-8' },
    });
    const child = launchJail({
      bubblewrapArgs: base,
      command: this.python.executable,
      args: ['-c', `import os\nos.chdir('/workspace')\n${code}`],
      slot,
      dropTo: { uid: JAIL_UID, gid: JAIL_UID },
      resolvConf: slot.egress ? join(this.runDir, 'resolv.conf') : undefined,
    });
    child.stdin!.end();
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-20_000)));
    return new Promise((resolvePromise, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
    });
  }

  /** Runs code that prints one JSON line; returns it parsed (fails with stderr otherwise). */
  async probe(slot: JailSlot, code: string): Promise<Record<string, unknown>> {
    const result = await this.run(slot, code);
    if (result.code !== 0) throw new Error(`jail exited ${result.code ?? result.signal}: ${result.stderr}`);
    return JSON.parse(result.stdout) as Record<string, unknown>;
  }

  async close(): Promise<void> {
    await Promise.all(this.pools.map((pool) => pool.close()));
    await this.cgroups?.close();
    rmSync(this.runDir, { recursive: true, force: true });
    rmSync(this.workspace, { recursive: true, force: true });
  }
}
