import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { Workspace } from '../../workspace/workspace.js';
import { PerStepSession, type OneStepRunner } from '../per-step-session.js';
import { DEFAULT_LIMITS, DEFAULT_MAX_OUTPUT_BYTES, stepRequestJson, stoppedStepResult } from '../runner-protocol.js';
import {
  SandboxError,
  type ResourceLimits,
  type RunOptions,
  type Sandbox,
  type SandboxSession,
  type StepLimitKind,
  type StepRequest,
  type StepResult,
} from '../sandbox.js';
import { bubblewrapArguments, JAIL_RUNNER_DIR, JAIL_WORKSPACE, probeBubblewrap, type JailMode } from './bubblewrap.js';
import { resolvePython, type PythonInfo } from './python.js';
import { handOverWorkspace, killProcessesOf, sandboxUserFor, type SandboxUser } from './sandbox-user.js';
import {
  interpretExit,
  prepareStepDirectory,
  readPartialOutput,
  readStepResult,
  type RunnerExit,
  removeStepDirectory,
} from './step-files.js';

/**
 * Runs steps with sandbox-image/runner.py in a local process: inside bubblewrap when it works
 * (isolation `auto` or `required`), else as a plain process. Either way the runner gets a clean
 * environment (never the controller's secrets), resource limits, and its whole process tree is
 * killed when the step ends, times out or is cancelled.
 */

export interface LocalSandboxOptions {
  /** SANDBOX_PYTHON; else the first of /usr/bin/python3, python3 that can import dill. */
  python?: string;
  network: boolean;
  isolation: 'auto' | 'required' | 'off';
  limits?: ResourceLimits;
  /** Bytes of stdout and of stderr kept per step (head and tail). */
  maxOutputBytes?: number;
  logger: Logger;
  /** Folder holding runner.py (default: the repository's sandbox-image/). */
  runnerDir?: string;
  /** PATH used on the host to find python3 and bwrap (main.ts passes the controller's own PATH). */
  searchPath?: string;
}

/** The runner stops the user's code itself at timeoutSec; this is the backstop for code stuck in C. */
const KILL_GRACE_MS = 3_000;
const STDERR_TAIL_BYTES = 4_000;
const DEFAULT_SEARCH_PATH = '/usr/local/bin:/usr/bin:/bin';
/** What a step stopped by the controller loses (its result file was never written). */
const STOPPED_NOTE = 'The step was stopped before it could list the files it changed or save its Python state.';

function defaultRunnerDir(): string {
  const candidates = ['../../../sandbox-image', '../../../../sandbox-image'].map((relative) =>
    fileURLToPath(new URL(relative, import.meta.url)),
  );
  return candidates.find((dir) => existsSync(join(dir, 'runner.py'))) ?? candidates[0]!;
}

export class LocalSandbox implements Sandbox, OneStepRunner {
  private readonly python: PythonInfo;
  private readonly runnerDir: string;
  private readonly limits: ResourceLimits;
  private readonly maxOutputBytes: number;
  private readonly network: boolean;
  private readonly logger: Logger;
  /** The bubblewrap mode, or undefined when steps run as plain processes. */
  private readonly jail: JailMode | undefined;
  /** True when runner.py starts as root and drops to the thread's uid (`--user`). */
  private readonly dropsPrivileges: boolean;
  private readonly running = new Set<number>();

  constructor(options: LocalSandboxOptions) {
    const searchPath = options.searchPath ?? DEFAULT_SEARCH_PATH;
    this.python = resolvePython(options.python, searchPath);
    this.runnerDir = resolve(options.runnerDir ?? defaultRunnerDir());
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.maxOutputBytes = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    this.network = options.network;
    this.logger = options.logger;
    const probeUser = sandboxUserFor(join(this.runnerDir, 'probe'));

    const problems: string[] = [];
    if (options.isolation !== 'off') {
      const modes: JailMode[] = probeUser === undefined ? ['user-namespace'] : ['drop-root', 'user-namespace'];
      for (const mode of modes) {
        const problem = probeBubblewrap(mode, this.python, this.runnerDir, mode === 'drop-root' ? probeUser : undefined, searchPath);
        if (problem === undefined) {
          this.jail = mode;
          break;
        }
        problems.push(`${mode}: ${problem}`);
      }
    }
    if (this.jail === undefined && options.isolation === 'required') {
      throw new SandboxError(
        'start_failed',
        `SANDBOX_ISOLATION=required but bubblewrap is unusable (${problems.join('; ')}). Install it ` +
          '(apt-get install bubblewrap) and allow user namespaces, or set SANDBOX_ISOLATION=auto.',
      );
    }
    if (this.jail === undefined && options.isolation === 'auto') {
      this.logger.warn(
        `bubblewrap is unusable (${problems.join('; ')}): steps run as plain processes and threads are NOT ` +
          "isolated from each other (code can read other threads' files). Install bubblewrap " +
          '(apt-get install bubblewrap) to isolate them.',
      );
    }
    // A root controller whose jail had to use a user namespace runs steps as (namespaced) root.
    this.dropsPrivileges = probeUser !== undefined && this.jail !== 'user-namespace';
    if (probeUser !== undefined && !this.dropsPrivileges) {
      this.logger.warn('steps run as root in a user namespace: SANDBOX_MAX_PROCESSES is not enforced by the kernel');
    }
  }

  /** One line for the start-up log: which isolation is active. */
  describeIsolation(): string {
    const mode = this.jail !== undefined ? `bubblewrap (${this.jail}, network ${this.network ? 'on' : 'off'})` : 'plain process, NOT isolated';
    const user = this.dropsPrivileges ? ', per-thread sandbox uid' : '';
    return `local sandbox: ${mode}${user}, python ${this.python.executable}`;
  }

  /** True when steps run inside bubblewrap. */
  get isolated(): boolean {
    return this.jail !== undefined;
  }

  private environment(): Record<string, string> {
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
      OPENBLAS_NUM_THREADS: String(Math.min(4, availableParallelism())),
      OMP_NUM_THREADS: String(Math.min(4, availableParallelism())),
    };
  }

  session(workspace: Workspace): SandboxSession {
    return new PerStepSession(this, workspace);
  }

  /** Runs one step in a fresh runner process (one-shot mode). */
  async run(workspace: Workspace, request: StepRequest, options: RunOptions = {}): Promise<StepResult> {
    const location = workspace.location;
    if (location.kind !== 'local') {
      throw new SandboxError('unsupported_workspace', `LocalSandbox needs a local workspace, got ${location.kind}`);
    }
    if (options.signal?.aborted) throw new SandboxError('cancelled', 'step cancelled before it started');
    const hostDir = resolve(location.dir);
    const stepId = randomUUID();
    const stepDir = await prepareStepDirectory(hostDir, stepId, stepRequestJson(stepId, request, this.limits, this.maxOutputBytes));
    try {
      return await this.runPrepared(hostDir, stepId, stepDir, request, options);
    } finally {
      await removeStepDirectory(hostDir, stepDir).catch((error: unknown) =>
        this.logger.warn('step folder not removed', { stepId, error: describeError(error) }),
      );
    }
  }

  private async runPrepared(hostDir: string, stepId: string, stepDir: string, request: StepRequest, options: RunOptions): Promise<StepResult> {
    const user = this.dropsPrivileges ? sandboxUserFor(hostDir) : undefined;
    if (user !== undefined) await handOverWorkspace(hostDir, user);

    const started = Date.now();
    const exit = await this.spawnRunner(hostDir, stepId, request.timeoutSec, user, options.signal);
    const durationMs = Date.now() - started;
    // Without bubblewrap's pid namespace, processes that left the step's process group remain.
    if (user !== undefined && this.jail === undefined) await killProcessesOf(user);
    if (exit.stoppedBy === 'abort') throw new SandboxError('cancelled', `step ${stepId} cancelled`);

    const result = await readStepResult(hostDir, stepDir);
    if (result !== undefined && exit.stoppedBy === undefined) return { ...result, exitCode: exit.code ?? 0 };
    const limit: StepLimitKind | undefined = exit.stoppedBy === 'timeout' ? 'timeout' : await interpretExit(stepDir, exit);
    if (limit === undefined) {
      const status = exit.signal !== null ? `signal ${exit.signal}` : `exit status ${exit.code}`;
      throw new SandboxError('runner_failed', `runner.py failed for step ${stepId} (${status}): ${exit.stderrTail.trim()}`, {
        userMessage: 'The code sandbox failed to run this step.',
      });
    }
    return this.limitResult(hostDir, stepId, stepDir, limit, request.timeoutSec, exit, durationMs);
  }

  private async limitResult(
    hostDir: string,
    stepId: string,
    stepDir: string,
    limit: StepLimitKind,
    timeoutSec: number,
    exit: RunnerExit,
    durationMs: number,
  ): Promise<StepResult> {
    const output = await readPartialOutput(hostDir, stepDir, this.maxOutputBytes);
    return stoppedStepResult({ stepId, limit, limits: this.limits, timeoutSec, durationMs, exitCode: exit.code ?? 128, output, note: STOPPED_NOTE });
  }

  /** The command that starts runner.py for one step: inside bubblewrap when it works, else directly. */
  private runnerCommand(hostDir: string, stepId: string, user: SandboxUser | undefined): { command: string; args: string[] } {
    const userArgs = user === undefined ? [] : ['--user', `${user.uid}:${user.gid}`];
    if (this.jail === undefined) {
      return { command: this.python.executable, args: [join(this.runnerDir, 'runner.py'), '--workspace', hostDir, '--step', stepId, ...userArgs] };
    }
    const jail = bubblewrapArguments({
      mode: this.jail,
      workspaceDir: hostDir,
      runnerDir: this.runnerDir,
      python: this.python,
      network: this.network,
      tmpSizeMb: this.limits.memoryMb,
      environment: this.environment(),
    });
    return {
      command: 'bwrap',
      args: [...jail, this.python.executable, `${JAIL_RUNNER_DIR}/runner.py`, '--workspace', JAIL_WORKSPACE, '--step', stepId, ...userArgs],
    };
  }

  private spawnRunner(
    hostDir: string,
    stepId: string,
    timeoutSec: number,
    user: SandboxUser | undefined,
    signal: AbortSignal | undefined,
  ): Promise<RunnerExit> {
    const { command, args } = this.runnerCommand(hostDir, stepId, user);
    return new Promise((resolvePromise, reject) => {
      const child = spawn(command, args, {
        cwd: hostDir,
        env: this.environment(),
        detached: true, // own process group: the whole tree is killed at once
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderrTail = '';
      let stoppedBy: RunnerExit['stoppedBy'];
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
      });
      const stop = (reason: 'timeout' | 'abort') => {
        stoppedBy ??= reason;
        killProcessGroup(child.pid);
      };
      const timer = setTimeout(() => stop('timeout'), timeoutSec * 1000 + KILL_GRACE_MS);
      const onAbort = () => stop('abort');
      signal?.addEventListener('abort', onAbort, { once: true });
      if (child.pid !== undefined) this.running.add(child.pid);

      child.once('error', (error) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        reject(new SandboxError('start_failed', `could not start ${command}: ${error.message}`, { cause: error }));
      });
      child.once('exit', (code, exitSignal) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        killProcessGroup(child.pid); // children the step left behind (plain process mode; bubblewrap's pid namespace is gone already)
        if (child.pid !== undefined) this.running.delete(child.pid);
        // Left-behind processes could hold stderr open; do not wait for them.
        setImmediate(() => child.stderr.destroy());
        this.logger.debug('step runner exited', { stepId, code, signal: exitSignal, stoppedBy });
        resolvePromise({ code, signal: exitSignal, stoppedBy, stderrTail });
      });
    });
  }

  async close(): Promise<void> {
    for (const pid of this.running) killProcessGroup(pid);
    this.running.clear();
  }
}

function killProcessGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
