import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../logger.js';
import { SandboxError, type ResourceLimits } from '../sandbox.js';
import { bubblewrapArguments, JAIL_RUNNER_DIR, JAIL_WORKSPACE, probeBubblewrap, type JailMode } from './bubblewrap.js';
import type { PythonInfo } from './python.js';
import { isRoot, sandboxUserFor, type SandboxUser } from './sandbox-user.js';
import { detectCgroupLayout } from './cgroup-layout.js';
import { CgroupParent } from './cgroup-parent.js';
import { launchJail } from './jail-launch.js';
import { findNetworkTools, JAIL_ADDRESSES, type NetworkTools } from './jail-network.js';
import { JailSlotPool, type JailSlot } from './jail-slots.js';
import { SeccompFilter } from './seccomp-filter.js';

/**
 * Everything the local sandbox needs to start a jailed runner, decided once at start-up (issue 14):
 * the bubblewrap mode, the cgroup parent, the seccomp filter, the network stack and the pool of
 * prepared slots. Fails closed: with SANDBOX_ISOLATION=required (the default) a host that cannot jail
 * or build the filter refuses to start; a missing network stack means no network rather than the
 * host's; missing cgroups leave the per-process limits, said in one start-up line.
 */

export interface JailRuntimeOptions {
  isolation: 'required' | 'off';
  network: 'egress' | 'off';
  python: PythonInfo;
  runnerDir: string;
  limits: ResourceLimits;
  logger: Logger;
  /** SANDBOX_SESSION: false = a slot per step. */
  session?: boolean;
  /** PATH used on the host to find bwrap (the probe). */
  searchPath: string;
  /** Tests: a network stack other than the one found on PATH. */
  networkTools?: NetworkTools;
}

const ISOLATION_OFF_WARNING =
  'SANDBOX_ISOLATION=off: steps run as plain processes and threads are NOT isolated — code from any thread can ' +
  "read the controller's environment (Slack and OpenAI keys), every thread's files and the host's network. " +
  'Use only on a single-user development machine.';

/** Processes and threads of the jail itself (bwrap ×2, the stack, the namespace holder) beside the step's. */
const PIDS_HEADROOM = 16;

export class JailRuntime {
  /** The bubblewrap mode, or undefined with SANDBOX_ISOLATION=off. */
  readonly mode: JailMode | undefined;
  private pool: JailSlotPool;
  /** Settles once egress is known to work (or the runtime fell back to no network). */
  private readonly ready: Promise<void>;
  /** One line per protection, for the start-up log. */
  readonly description: string[] = [];
  private readonly cgroups: CgroupParent | undefined;
  private readonly seccomp: SeccompFilter | undefined;
  private readonly runDir = mkdtempSync(join(tmpdir(), 'oi-jail-'));
  private readonly egress: boolean;

  constructor(private readonly options: JailRuntimeOptions) {
    this.networkToolsOverride = options.networkTools;
    const { logger } = options;
    if (options.isolation === 'off') {
      logger.warn(ISOLATION_OFF_WARNING);
    } else {
      this.mode = chooseMode(options);
      const filter = SeccompFilter.build();
      if (typeof filter === 'string') {
        throw new SandboxError('start_failed', `SANDBOX_ISOLATION=required but the seccomp filter cannot be built: ${filter}.`);
      }
      this.seccomp = filter;
      this.description.push(`jail: bubblewrap (${this.mode}), seccomp filter of ${filter.instructions} instructions, capabilities dropped`);
    }
    const layout = detectCgroupLayout();
    try {
      if (typeof layout === 'string') throw new Error(layout);
      this.cgroups = CgroupParent.prepare(layout);
      this.description.push(`cgroups: ${this.cgroups.describe()}, per session: memory ${options.limits.memoryMb} MB (tmpfs included, no swap), ${options.limits.maxProcesses} processes, equal CPU weight`);
      for (const note of this.cgroups.notes) logger.info(note);
    } catch (error) {
      this.description.push(
        `cgroups: NOT usable (${(error as Error).message}): per-process limits only (RLIMIT_AS, RLIMIT_NPROC); /tmp and /dev/shm are not counted`,
      );
    }
    this.egress = options.network === 'egress' && this.mode !== undefined && this.networkTools() !== undefined;
    const tools = this.egress ? this.networkTools() : undefined;
    if (this.mode !== undefined) {
      this.description.push(
        tools !== undefined
          ? `network: egress through ${tools.stack} in a namespace per session; loopback, link-local, private ranges and the host unreachable`
          : options.network === 'egress'
            ? `network: OFF — SANDBOX_NETWORK=egress but ${findNetworkTools(options.searchPath) as string}; install passt (pasta) and iproute2`
            : 'network: off (a namespace with loopback only)',
      );
    }
    writeFileSync(join(this.runDir, 'resolv.conf'), `nameserver ${JAIL_ADDRESSES.dns}\n`, { mode: 0o644 });
    this.pool = this.makePool(tools);
    this.ready = tools === undefined ? Promise.resolve() : this.checkEgress(tools);
  }

  private makePool(tools: NetworkTools | undefined): JailSlotPool {
    const pool = new JailSlotPool({
      cgroups: this.cgroups,
      limits: {
        memoryBytes: this.options.limits.memoryMb * 1024 * 1024,
        maxProcesses: this.options.limits.maxProcesses + PIDS_HEADROOM,
        cpuWeight: 100,
      },
      network: tools === undefined ? undefined : { tools, rootless: !isRoot() },
      seccompProgram: this.seccomp?.program,
      environment: this.environment(),
      runDir: this.runDir,
      // One runner per step uses a slot per step: keep two ready.
      spare: this.options.session === false ? 2 : 1,
      logger: this.options.logger,
    });
    pool.warm();
    return pool;
  }

  /**
   * The first prepared slot proves egress works on this host (pasta may be installed and still fail:
   * no access to /dev/net/tun, a kernel without tap). If it does not, steps get no network — never
   * the host's — and the log says why.
   */
  private async checkEgress(tools: NetworkTools): Promise<void> {
    try {
      await this.pool.ready();
      this.pool.release(await this.pool.take()).catch(() => {});
    } catch (error) {
      this.options.logger.warn(`network: OFF — SANDBOX_NETWORK=egress but ${tools.stack} failed (${(error as Error).message}); steps run with no network`);
      await this.pool.close();
      this.pool = this.makePool(undefined);
    }
  }

  /** A slot for a new jail (prepared ahead when possible). */
  async takeSlot(): Promise<JailSlot> {
    await this.ready;
    return this.pool.take();
  }

  async releaseSlot(slot: JailSlot): Promise<void> {
    await this.pool.release(slot);
  }

  private readonly networkToolsOverride: NetworkTools | undefined;

  private networkTools(): NetworkTools | undefined {
    const tools = this.networkToolsOverride ?? findNetworkTools(this.options.searchPath);
    return typeof tools === 'string' ? undefined : tools;
  }

  /** True when every step runs with a cgroup (memory counted with tmpfs, kill-the-group). */
  get hasCgroups(): boolean {
    return this.cgroups !== undefined;
  }

  /** The uid a thread's steps run as (a root controller), or undefined (they run as the controller's uid). */
  userFor(workspaceDir: string): SandboxUser | undefined {
    return this.mode === 'user-namespace' ? undefined : sandboxUserFor(workspaceDir);
  }

  /**
   * Starts runner.py for a workspace in a slot: `modeArguments` is `--step ID` or `--session`. Its
   * stdin, stdout and stderr are pipes (a session talks over stdin/stdout).
   */
  spawnRunner(slot: JailSlot, workspaceDir: string, modeArguments: string[]): ChildProcess {
    const user = this.userFor(workspaceDir);
    if (this.mode === undefined) {
      // SANDBOX_ISOLATION=off: a plain process (in the slot's cgroup when there is one); a root controller's runner drops itself.
      const args = [join(this.options.runnerDir, 'runner.py'), '--workspace', workspaceDir, ...modeArguments];
      if (user !== undefined) args.push('--user', `${user.uid}:${user.gid}`);
      return slot.launcher.exec(this.options.python.executable, args);
    }
    return launchJail({
      bubblewrapArgs: bubblewrapArguments({
        mode: this.mode,
        workspaceDir,
        runnerDir: this.options.runnerDir,
        python: this.options.python,
        network: false,
        tmpSizeMb: this.options.limits.memoryMb,
        environment: this.environment(),
      }),
      command: this.options.python.executable,
      args: [`${JAIL_RUNNER_DIR}/runner.py`, '--workspace', JAIL_WORKSPACE, '--own-pid-namespace', ...modeArguments],
      slot,
      dropTo: user,
      resolvConf: slot.egress ? join(this.runDir, 'resolv.conf') : undefined,
    });
  }

  private environment(): Record<string, string> {
    const threads = String(Math.min(4, availableParallelism()));
    return {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      HOME: '/tmp',
      TMPDIR: '/tmp',
      USER: 'sandbox',
      LOGNAME: 'sandbox',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      MPLBACKEND: 'Agg', // runner.py sets MPLCONFIGDIR to the workspace's .oi/matplotlib (font cache kept)
      PYTHONDONTWRITEBYTECODE: '1',
      PYTHONUNBUFFERED: '1',
      // glibc reserves 64 MB of address space per thread arena and OpenBLAS a buffer per core: both
      // count against RLIMIT_AS (SANDBOX_MEMORY_MB), so a many-core host could not even import numpy.
      MALLOC_ARENA_MAX: '2',
      OPENBLAS_NUM_THREADS: threads,
      OMP_NUM_THREADS: threads,
      // A session imports the data libraries when a step first uses them (or the checkpoint needs them),
      // not at start-up: many new threads at once would otherwise each burn ~1-3 s of CPU on imports
      // they may never use (docs/runner-protocol.md).
      OI_SESSION_PRELOAD: 'dill',
    };
  }

  async close(): Promise<void> {
    await this.ready;
    await this.pool.close();
    await this.cgroups?.close();
    rmSync(this.runDir, { recursive: true, force: true });
  }
}

/** drop-root for a root controller (per-thread uid), else user-namespace; required → throws when neither works. */
function chooseMode(options: JailRuntimeOptions): JailMode {
  const probeUser = sandboxUserFor(join(options.runnerDir, 'probe'));
  const modes: JailMode[] = probeUser === undefined ? ['user-namespace'] : ['drop-root', 'user-namespace'];
  const problems: string[] = [];
  for (const mode of modes) {
    if (mode === 'drop-root' && !existsSync('/usr/bin/setpriv')) {
      problems.push('drop-root: /usr/bin/setpriv (util-linux) is missing');
      continue;
    }
    const problem = probeBubblewrap(mode, options.python, options.runnerDir, mode === 'drop-root' ? probeUser : undefined, options.searchPath);
    if (problem === undefined) return mode;
    problems.push(`${mode}: ${problem}`);
  }
  throw new SandboxError(
    'start_failed',
    `SANDBOX_ISOLATION=required but bubblewrap is unusable (${problems.join('; ')}). Install it (apt-get install ` +
      'bubblewrap) and allow user namespaces; or, on a single-user development machine only, set SANDBOX_ISOLATION=off.',
  );
}
