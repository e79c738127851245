import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Logger } from '../../logger.js';
import type { Workspace } from '../../workspace/workspace.js';
import { SandboxError, type ResourceLimits, type RunOptions, type SandboxSession, type StepRequest, type StepResult } from '../sandbox.js';
import type { JailRuntime } from './jail-runtime.js';
import { RunnerSession } from './runner-session.js';
import { handOverWorkspace } from './sandbox-user.js';
import { SessionPool } from './session-pool.js';
import { handOverTopLevel, stepBudget } from './step-budget.js';
import { measureWorkspace } from './workspace-quota.js';

/**
 * Warm local sessions (issue 13): one jailed runner.py per active thread, kept between steps and
 * turns, at most SANDBOX_MAX_SESSIONS of them (least recently used ended first), each ended after
 * SANDBOX_SESSION_IDLE_SEC. The thread's workspace folder is the pool's key, so two threads never
 * share a session. The quota measurement of the workspace runs after a step, off the next step's path.
 */

export interface WarmSessionsOptions {
  runtime: JailRuntime;
  limits: ResourceLimits;
  maxOutputBytes: number;
  workspaceMaxBytes: number;
  idleSec: number;
  maxSessions: number;
  logger: Logger;
}

interface ThreadState {
  /** The workspace size measured after the last step (a promise: it runs in the background). */
  usage?: Promise<number>;
}

export class WarmSessions {
  private readonly pool: SessionPool<RunnerSession>;
  private readonly threads = new Map<string, ThreadState>();

  constructor(private readonly options: WarmSessionsOptions) {
    this.pool = new SessionPool<RunnerSession>({
      maxSessions: options.maxSessions,
      idleMs: options.idleSec * 1000,
      start: (workspaceDir) => this.start(workspaceDir),
      onEnded: (workspaceDir, reason) => {
        this.threads.delete(workspaceDir);
        options.logger.debug('sandbox session ended', { reason });
      },
    });
  }

  /** Live sessions (for tests and the benchmark). */
  get size(): number {
    return this.pool.size;
  }

  session(workspace: Workspace): SandboxSession {
    const location = workspace.location;
    if (location.kind !== 'local') {
      throw new SandboxError('unsupported_workspace', `LocalSandbox needs a local workspace, got ${location.kind}`);
    }
    const workspaceDir = resolve(location.dir);
    this.pool.warm(workspaceDir);
    return {
      run: (request, options) => this.run(workspaceDir, request, options),
      release: async () => {
        // The session stays warm for the thread's next turn, until idle expiry or eviction.
      },
    };
  }

  private async start(workspaceDir: string): Promise<RunnerSession> {
    const { runtime } = this.options;
    await mkdir(workspaceDir, { recursive: true });
    const user = runtime.userFor(workspaceDir);
    if (user !== undefined) await handOverWorkspace(workspaceDir, user);
    const slot = await runtime.takeSlot();
    try {
      return await RunnerSession.start({
        slot,
        releaseSlot: (used) => runtime.releaseSlot(used),
        spawnRunner: (used, args) => runtime.spawnRunner(used, workspaceDir, args),
        workspaceDir,
        limits: this.options.limits,
        maxOutputBytes: this.options.maxOutputBytes,
        logger: this.options.logger,
      });
    } catch (error) {
      await runtime.releaseSlot(slot);
      throw error;
    }
  }

  private async run(workspaceDir: string, request: StepRequest, options: RunOptions = {}): Promise<StepResult> {
    if (options.signal?.aborted) throw new SandboxError('cancelled', 'step cancelled before it started');
    return this.pool.use(workspaceDir, async (session) => {
      const state = this.threads.get(workspaceDir) ?? {};
      this.threads.set(workspaceDir, state);
      const user = this.options.runtime.userFor(workspaceDir);
      if (user !== undefined) await handOverTopLevel(workspaceDir, user);
      const budget = await stepBudget(workspaceDir, {
        quotaBytes: this.options.workspaceMaxBytes,
        maxFileMb: this.options.limits.maxFileMb,
        usedBytes: await state.usage?.catch(() => undefined),
      });
      try {
        const { result, ended } = await session.runStep(request, {
          signal: options.signal,
          fileLimitMb: budget.fileLimitMb,
          quotaBytes: budget.stopAtBytes,
        });
        if (ended !== undefined) await this.pool.end(workspaceDir, ended);
        return result;
      } finally {
        // Measured now, awaited by the next step: the model's answer usually takes longer than this.
        state.usage = measureWorkspace(workspaceDir).then((usage) => usage.bytes);
        state.usage.catch(() => {});
        if (!session.alive) await this.pool.end(workspaceDir, 'the session ended with its step');
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
