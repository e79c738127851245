import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../logger.js';
import type { Workspace } from '../../workspace/workspace.js';
import { PerStepSession, type OneStepRunner } from '../per-step-session.js';
import { DEFAULT_LIMITS, DEFAULT_MAX_OUTPUT_BYTES } from '../runner-protocol.js';
import { SandboxError, type ResourceLimits, type RunOptions, type Sandbox, type SandboxSession, type StepRequest, type StepResult } from '../sandbox.js';
import { JailRuntime } from './jail-runtime.js';
import { runOneShotStep } from './one-shot-step.js';
import { resolvePython, type PythonInfo } from './python.js';
import { WarmSessions } from './warm-sessions.js';
import { DEFAULT_WORKSPACE_MAX_MB } from './workspace-quota.js';

/**
 * Runs a thread's steps with sandbox-image/runner.py on this machine (issues 5, 13, 14): by default one
 * warm, jailed runner per active thread (WarmSessions); with SANDBOX_SESSION=off one runner per step.
 * Both use the same jail (JailRuntime: bubblewrap, seccomp, the thread's uid, a cgroup, a network
 * namespace of its own), a clean environment and the workspace quota.
 */

export interface LocalSandboxOptions {
  /** SANDBOX_PYTHON; else the first of /usr/bin/python3, python3 that can import dill. */
  python?: string;
  /** SANDBOX_NETWORK. */
  network: 'egress' | 'off';
  /** SANDBOX_ISOLATION: `off` runs steps as plain processes (a loud warning at start-up). */
  isolation: 'required' | 'off';
  /** SANDBOX_SESSION (default true): false = one runner per step. */
  session?: boolean;
  /** SANDBOX_SESSION_IDLE_SEC (default 600). */
  sessionIdleSec?: number;
  /** SANDBOX_MAX_SESSIONS (default 16). */
  maxSessions?: number;
  /** SANDBOX_WORKSPACE_MAX_MB (default 2048). */
  workspaceMaxMb?: number;
  limits?: ResourceLimits;
  /** Bytes of stdout and of stderr kept per step (head and tail). */
  maxOutputBytes?: number;
  logger: Logger;
  /** Folder holding runner.py (default: the repository's sandbox-image/). */
  runnerDir?: string;
  /** PATH used on the host to find python3 and bwrap (main.ts passes the controller's own PATH). */
  searchPath?: string;
}

const DEFAULT_SEARCH_PATH = '/usr/local/bin:/usr/bin:/bin';

function defaultRunnerDir(): string {
  const candidates = ['../../../sandbox-image', '../../../../sandbox-image'].map((relative) =>
    fileURLToPath(new URL(relative, import.meta.url)),
  );
  return candidates.find((dir) => existsSync(join(dir, 'runner.py'))) ?? candidates[0]!;
}

export class LocalSandbox implements Sandbox, OneStepRunner {
  private readonly python: PythonInfo;
  private readonly runtime: JailRuntime;
  private readonly warm: WarmSessions | undefined;
  private readonly limits: ResourceLimits;
  private readonly maxOutputBytes: number;
  private readonly workspaceMaxBytes: number;

  constructor(private readonly options: LocalSandboxOptions) {
    const searchPath = options.searchPath ?? DEFAULT_SEARCH_PATH;
    this.python = resolvePython(options.python, searchPath);
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.maxOutputBytes = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    this.workspaceMaxBytes = (options.workspaceMaxMb ?? DEFAULT_WORKSPACE_MAX_MB) * 1024 * 1024;
    this.runtime = new JailRuntime({
      isolation: options.isolation,
      network: options.network,
      python: this.python,
      runnerDir: resolve(options.runnerDir ?? defaultRunnerDir()),
      limits: this.limits,
      logger: options.logger,
      searchPath,
      session: options.session,
    });
    if (options.session !== false) {
      this.warm = new WarmSessions({
        runtime: this.runtime,
        limits: this.limits,
        maxOutputBytes: this.maxOutputBytes,
        workspaceMaxBytes: this.workspaceMaxBytes,
        idleSec: options.sessionIdleSec ?? 600,
        maxSessions: options.maxSessions ?? 16,
        logger: options.logger,
      });
    }
  }

  /** The start-up log's lines: each protection, its setting, or why it is missing. */
  describeIsolation(): string {
    const sessions = this.warm === undefined ? 'one runner per step (SANDBOX_SESSION=off)' : `warm sessions (at most ${this.options.maxSessions ?? 16})`;
    const head = this.runtime.mode === undefined ? 'local sandbox: plain processes, NOT isolated' : 'local sandbox';
    return [`${head}, python ${this.python.executable}, ${sessions}`, ...this.runtime.description].join('\n  ');
  }

  /** True when steps run inside bubblewrap. */
  get isolated(): boolean {
    return this.runtime.mode !== undefined;
  }

  /** Live warm sessions (tests and the benchmark). */
  get liveSessions(): number {
    return this.warm?.size ?? 0;
  }

  session(workspace: Workspace): SandboxSession {
    return this.warm?.session(workspace) ?? new PerStepSession(this, workspace);
  }

  /** Runs one step in a fresh runner process (one-shot mode). */
  async run(workspace: Workspace, request: StepRequest, options: RunOptions = {}): Promise<StepResult> {
    const location = workspace.location;
    if (location.kind !== 'local') {
      throw new SandboxError('unsupported_workspace', `LocalSandbox needs a local workspace, got ${location.kind}`);
    }
    const context = {
      runtime: this.runtime,
      limits: this.limits,
      maxOutputBytes: this.maxOutputBytes,
      workspaceMaxBytes: this.workspaceMaxBytes,
      logger: this.options.logger,
    };
    return runOneShotStep(context, resolve(location.dir), request, options);
  }

  async close(): Promise<void> {
    await this.warm?.close();
    await this.runtime.close();
  }
}
