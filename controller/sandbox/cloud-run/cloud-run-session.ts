import { randomBytes } from 'node:crypto';
import { describeError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { Workspace } from '../../workspace/workspace.js';
import { exitRequestLine } from '../runner-protocol.js';
import { SandboxError, type ResourceLimits, type RunOptions, type SandboxSession, type StepRequest, type StepResult } from '../sandbox.js';
import type { TokenMinter } from './downscoped-token.js';
import { isEnded, type JobExecutions } from './job-executions.js';
import { LiveSession, type SessionTiming } from './live-session.js';
import { readSessionRecord, writeSessionRecord, type SessionRecord } from './session-record.js';
import { runStepInSession, type StepOutcome } from './session-step.js';

/**
 * Warm sessions on Cloud Run (issue 13; docs/architecture.md, "Cloud Run sessions"): one job execution per
 * thread session. `session(workspace)` returns at once and starts (or finds) the thread's execution in the
 * background, so its cold start overlaps the model's first answer; the execution mounts the thread's prefix,
 * starts `runner.py --session` once and serves the thread's steps through its mailbox (session-step.ts) until it
 * has been idle for SANDBOX_SESSION_IDLE_SEC or its token is about to expire.
 *
 * Never two sessions for one thread, never one for two: the thread's session record (session-record.ts) names
 * its execution; at a turn's start the controller reads it and reuses that execution when it is alive and has
 * time left (also one started by another controller instance or before a restart), else asks it to exit and
 * starts a new one. Each execution gets its own thread's prefix and a token downscoped to it. One turn at a time
 * per thread (the turn queue, across instances the store's lease) keeps two controllers from sending at once;
 * the record's conditional writes catch it if they ever did.
 */

export interface CloudRunSessionsOptions {
  executions: JobExecutions;
  tokenMinter: TokenMinter;
  limits: ResourceLimits;
  maxOutputBytes: number;
  /** SANDBOX_SESSION_IDLE_SEC. */
  idleSec: number;
  /** STEP_TIMEOUT_SEC: at a turn's start the session must have room for at least one such step. */
  maxStepSec: number;
  timing: SessionTiming;
  logger: Logger;
}

export class CloudRunSessions {
  private readonly threads = new Map<string, ThreadSession>();

  constructor(private readonly options: CloudRunSessionsOptions) {}

  session(workspace: Workspace): SandboxSession {
    this.forgetIdleThreads();
    const key = workspace.location.kind === 'gcs' ? workspace.location.prefix : '';
    let thread = this.threads.get(key);
    if (thread === undefined) {
      thread = new ThreadSession(this.options, workspace);
      this.threads.set(key, thread);
    }
    thread.prepare();
    const current = thread;
    return { run: (request, options) => current.run(request, options), release: async () => {} };
  }

  /**
   * Ends the thread's live session now, instead of letting it idle out (the post-deploy check does not leave its
   * scratch thread's execution running): an `exit` request, then the execution's end is awaited (cancelled when it
   * takes longer than the stop grace period). Resolves with how the execution ended, or undefined without a session.
   */
  async end(workspace: Workspace): Promise<{ executionName: string; status: string } | undefined> {
    const key = workspace.location.kind === 'gcs' ? workspace.location.prefix : '';
    const thread = this.threads.get(key);
    this.threads.delete(key);
    return thread?.end();
  }

  /** Threads whose session has ended or idled out, with nothing under way, are forgotten (their record stays). */
  private forgetIdleThreads(): void {
    for (const [key, thread] of this.threads) if (thread.forgettable()) this.threads.delete(key);
  }
}

class ThreadSession {
  private live: LiveSession | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private pending = 0;

  constructor(
    private readonly options: CloudRunSessionsOptions,
    private readonly workspace: Workspace,
  ) {}

  forgettable(): boolean {
    return this.pending === 0 && (this.live === undefined || !this.live.usable(0, this.options.timing));
  }

  /** The speculative start at a turn's beginning: the thread's execution is found or started in the background. */
  prepare(): void {
    const { maxStepSec, timing } = this.options;
    this.serial(() => this.ensure(maxStepSec + timing.stepReserveSec + timing.turnReserveSec, true)).catch((error: unknown) =>
      this.options.logger.warn('sandbox session not prepared', { error: describeError(error) }),
    );
  }

  run(request: StepRequest, options: RunOptions = {}): Promise<StepResult> {
    return this.serial(async () => {
      for (let attempt = 0; ; attempt++) {
        const live = await this.ensure(request.timeoutSec + this.options.timing.stepReserveSec, false);
        const outcome: StepOutcome = await runStepInSession(this.options, live, request, options);
        if (outcome.kind === 'not-taken') {
          if (attempt > 0) throw new SandboxError('runner_failed', 'two sandbox sessions in a row ended before taking the step', { userMessage: 'The sandbox could not take the step.' });
          this.options.logger.info('sandbox session ended (or was taken over) before it took the step: sent again', { session: live.record.sessionId });
          continue;
        }
        return outcome.result;
      }
    });
  }

  end(): Promise<{ executionName: string; status: string } | undefined> {
    return this.serial(async () => {
      const live = this.live;
      if (live === undefined || live.ended !== undefined) return undefined;
      const { executions, timing, logger } = this.options;
      await live.send(exitRequestLine(), 'control');
      live.ended = 'ended on request';
      const deadline = Date.now() + timing.stopGraceMs + timing.endMarginSec * 1000;
      for (;;) {
        const state = await executions.state(live.executionName);
        if (isEnded(state)) return { executionName: live.executionName, status: state.status };
        if (Date.now() > deadline) {
          await executions.cancel(live.executionName, logger);
          return { executionName: live.executionName, status: 'cancelled' };
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    });
  }

  /** Runs `work` after everything queued for this thread (a prepare and the turn's steps never overlap). */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    this.pending += 1;
    const next = this.queue.then(work, work).finally(() => (this.pending -= 1));
    this.queue = next.catch(() => {});
    return next;
  }

  /**
   * The live session a step of `needSec` can use. Between the steps of a turn the one in memory is used as it is;
   * at a turn's start (`check`), the record and the execution's state are read again, because another instance
   * may have used or replaced the session since, or it may have ended.
   */
  private async ensure(needSec: number, check: boolean): Promise<LiveSession> {
    const { timing, executions } = this.options;
    const current = this.live;
    if (!check && current?.usable(needSec, timing)) return current;
    const { record, version } = await readSessionRecord(this.workspace);
    if (current?.usable(needSec, timing) && version === current.recordVersion && !isEnded(await executions.state(current.executionName))) return current;
    let latest = version;
    if (record !== undefined) {
      const adopted = await this.adopt(record, version, needSec);
      if (adopted instanceof LiveSession) return (this.live = adopted);
      latest = adopted;
    }
    if (current !== undefined && current.ended === undefined && current.record.sessionId !== record?.sessionId) await this.retire(current, 'not the thread’s recorded session');
    this.live = await this.start(latest);
    return this.live;
  }

  /**
   * The recorded session, when its execution is alive, has time left and no step of an earlier turn is still
   * running in it; else it is asked to exit (or found ended) and the version to replace its record at is returned.
   */
  private async adopt(record: SessionRecord, version: string | null, needSec: number): Promise<LiveSession | string | null> {
    const candidate = new LiveSession(this.workspace, record, version ?? '', true);
    const state = await this.options.executions.state(record.executionName).catch(() => undefined);
    if (state === undefined || isEnded(state)) {
      void this.removeMailbox(candidate);
      return version;
    }
    if (!candidate.usable(needSec, this.options.timing)) {
      await this.retire(candidate, 'too little time left');
      return version;
    }
    // Which request the relay waits for: a number handed out whose request was never written is used again.
    let next = record.nextSeq;
    if (next > 1 && !(await candidate.mailbox.hasRequest(next - 1))) next -= 1;
    if (record.lastStep > 0 && record.lastStep < next && (await candidate.mailbox.readResult(record.lastStep)).kind === 'absent') {
      // A step of an earlier turn is still running (its controller went away): not ours to wait for.
      await this.options.executions.cancel(record.executionName, this.options.logger);
      return version;
    }
    candidate.record = { ...record, nextSeq: next };
    candidate.readySeen = (await candidate.mailbox.readReady()).kind !== 'absent';
    this.options.logger.info('sandbox session reused', { session: record.sessionId, execution: record.executionName });
    return candidate;
  }

  /** Asks a live session to exit (it finishes nothing: no step runs in it) and forgets it; its relay cleans up. */
  private async retire(live: LiveSession, why: string): Promise<void> {
    live.ended = why;
    this.options.logger.info('sandbox session retired', { session: live.record.sessionId, why });
    await live.mailbox.writeRequest(live.record.nextSeq, exitRequestLine()).catch((error: unknown) =>
      this.options.logger.warn('exit request not written', { error: describeError(error) }),
    );
  }

  /** A new execution for the thread: its token, its session id, its record (written at `version`). */
  private async start(version: string | null): Promise<LiveSession> {
    const { timing, executions, tokenMinter, limits, idleSec } = this.options;
    const location = this.workspace.location;
    if (location.kind !== 'gcs') throw new SandboxError('unsupported_workspace', 'the Cloud Run sandbox needs a GCS workspace (STORAGE_BACKEND=gcs)');
    const sessionId = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
    const startedAt = Date.now();
    const token = await tokenMinter.mint(location.prefix, { validForSec: timing.tokenLifeSec });
    const endsAt = Math.min(token.expiresAt - timing.endMarginSec * 1000, startedAt + timing.tokenLifeSec * 1000);
    const { memoryMb, cpuSec, maxProcesses, maxFileMb } = limits;
    const env = {
      OI_BUCKET: location.bucket,
      OI_PREFIX: location.prefix,
      OI_SESSION_ID: sessionId,
      OI_SESSION_IDLE_SEC: String(idleSec),
      OI_SESSION_END_AT: String(Math.floor(endsAt / 1000)),
      OI_LIMITS: JSON.stringify({ memoryMb, cpuSec, maxProcesses, maxFileMb }),
      OI_TOKEN: token.token,
      OI_TOKEN_EXPIRES_AT: String(Math.floor(token.expiresAt / 1000)),
    };
    // The task timeout covers the session's whole life plus its exit and unmount.
    const { name } = await executions.start(env, Math.ceil((endsAt - startedAt) / 1000) + timing.endMarginSec);
    if (name === undefined) throw new SandboxError('start_failed', 'runJob answered without an execution name');
    const record: SessionRecord = { sessionId, executionName: name, nextSeq: 1, lastStep: 0, endsAt, tokenExpiresAt: token.expiresAt, idleSec, lastUsedAt: startedAt, startedAt };
    let recordVersion: string;
    try {
      recordVersion = await writeSessionRecord(this.workspace, record, version);
    } catch (error) {
      await executions.cancel(name, this.options.logger);
      throw error;
    }
    this.options.logger.info('sandbox session started', { session: sessionId, execution: name });
    return new LiveSession(this.workspace, record, recordVersion, false);
  }

  private async removeMailbox(live: LiveSession): Promise<void> {
    await live.mailbox.remove(live.record.nextSeq).catch((error: unknown) =>
      this.options.logger.warn('session mailbox not removed', { error: describeError(error) }),
    );
  }
}
