import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../logger.js';
import { boundStepResult } from '../bound-result.js';
import { SandboxError, type ResourceLimits, type StepRequest, type StepResult } from '../sandbox.js';
import { interpretExit, readPartialOutput, removeStepDirectory } from './step-files.js';
import type { JailSlot } from './jail-slots.js';
import { JsonLineReader } from './json-lines.js';
import type { PooledSession } from './session-pool.js';
import { parseSessionReply, SESSION_LINE_MAX_BYTES, sessionDisplays, stepRequestLine, stopRequestLine, type SessionReply, type SessionResultReply } from '../runner-protocol.js';
import { stoppedResult, type StopCause } from './stopped-step.js';
import { WorkspaceWatcher } from './workspace-quota.js';

/**
 * One long-lived runner.py in session mode for one thread (issue 13), inside its jail slot (cgroup,
 * network namespace): steps go in as JSON lines on its stdin, results come back on its stdout. The
 * controller measures every duration, bounds every result, and ends the session when that is the only
 * safe way: a step past its timeout or its Stop grace, the workspace over its quota, a reply that
 * breaks the protocol, the memory limit hit, or processes of a step still running after its result.
 */

export interface RunnerSessionOptions {
  slot: JailSlot;
  releaseSlot: (slot: JailSlot) => Promise<void>;
  /** Starts runner.py for the workspace in the slot (jailed, or as a plain process) with these mode arguments. */
  spawnRunner: (slot: JailSlot, modeArguments: string[]) => ChildProcess;
  /** The workspace on the host. */
  workspaceDir: string;
  limits: ResourceLimits;
  maxOutputBytes: number;
  logger: Logger;
  startTimeoutMs?: number;
}

export interface StepOptions {
  signal?: AbortSignal;
  /** RLIMIT_FSIZE for this step (the quota left, at most SANDBOX_MAX_FILE_MB). */
  fileLimitMb: number;
  /** The workspace size that ends the step (SANDBOX_WORKSPACE_MAX_MB). */
  quotaBytes?: number;
}

/** How long after its timeout a step may take to report before the session is killed. */
const KILL_GRACE_MS = 3_000;
/** How long a Stop may take before the session is killed. */
const STOP_GRACE_MS = 3_000;
const STDERR_TAIL = 4_000;

function signalName(number: number): string | undefined {
  return Object.entries(constants.signals).find(([, value]) => value === number)?.[0];
}

type Event = { kind: 'reply'; reply: SessionReply } | { kind: 'ended'; code: number | null; signal: NodeJS.Signals | null; problem?: string };

export class RunnerSession implements PooledSession {
  private ended: Extract<Event, { kind: 'ended' }> | undefined;
  private listener: ((event: Event) => void) | undefined;
  private stderrTail = '';
  private baseline = new Set<number>();
  private closing: Promise<void> | undefined;
  /** What the runner's start-up restored (the first step reports it too). */
  restoredAtStart: 'checkpoint' | 'fresh' = 'fresh';

  private constructor(
    private readonly options: RunnerSessionOptions,
    private readonly child: ChildProcess,
  ) {
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_TAIL)));
    child.stdin?.on('error', () => {}); // a dead runner: its exit is reported instead
    new JsonLineReader(child.stdout!, SESSION_LINE_MAX_BYTES, (line) => this.onLine(line), (problem) => this.broken(problem));
    child.once('exit', (code, signal) => this.emit({ kind: 'ended', code, signal }));
    child.once('error', (error) => this.emit({ kind: 'ended', code: null, signal: null, problem: error.message }));
  }

  /** Starts the runner and waits for its `ready` line. */
  static async start(options: RunnerSessionOptions): Promise<RunnerSession> {
    const args = ['--session', '--limits', JSON.stringify(options.limits)];
    const session = new RunnerSession(options, options.spawnRunner(options.slot, args));
    const timer = setTimeout(() => session.broken('the runner did not get ready in time'), options.startTimeoutMs ?? 60_000);
    try {
      const event = await session.next((reply) => reply.type === 'ready');
      if (event.kind === 'ended' || event.reply.type !== 'ready') {
        throw new SandboxError('start_failed', `the session runner did not start: ${session.describeEnd()}`, {
          userMessage: 'The code sandbox failed to start.',
        });
      }
      session.restoredAtStart = event.reply.restored;
      session.baseline = new Set(options.slot.cgroup?.processes() ?? []);
      return session;
    } catch (error) {
      await session.close('start failed');
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  get alive(): boolean {
    return this.ended === undefined && this.closing === undefined;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Runs one step; `ended` says why the session had to end with it (the pool then replaces it). */
  async runStep(request: StepRequest, options: StepOptions): Promise<{ result: StepResult; ended?: string }> {
    if (!this.alive) throw new SandboxError('runner_failed', 'the session has ended');
    const id = randomUUID();
    const group = this.options.slot.cgroup;
    const oomBefore = group?.oomKills() ?? 0;
    let cause: StopCause | undefined;
    let quotaUsed = 0;
    const stopNow = (why: StopCause) => {
      cause ??= why;
      void this.kill();
    };
    const timer = setTimeout(() => stopNow('timeout'), request.timeoutSec * 1000 + KILL_GRACE_MS);
    let stopTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      cause ??= 'abort';
      this.send(stopRequestLine(id)); // bwrap does not forward SIGINT: the runner's own Stop request
      stopTimer = setTimeout(() => stopNow('abort'), STOP_GRACE_MS);
    };
    const watcher =
      options.quotaBytes === undefined
        ? undefined
        : new WorkspaceWatcher(this.options.workspaceDir, options.quotaBytes, (used) => {
            quotaUsed = used;
            stopNow('quota');
          }).start();
    const started = performance.now();
    const limits = { ...this.options.limits, maxFileMb: options.fileLimitMb };
    this.send(stepRequestLine(id, request, limits, this.options.maxOutputBytes));
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    let event: Event;
    try {
      event = await this.next((reply) => reply.type !== 'ready' && reply.id === id);
    } finally {
      clearTimeout(timer);
      clearTimeout(stopTimer);
      watcher?.stop();
      options.signal?.removeEventListener('abort', onAbort);
    }
    const durationMs = performance.now() - started;
    if (cause === 'abort') {
      if (event.kind === 'ended') await this.close('stopped');
      throw new SandboxError('cancelled', `step ${id} cancelled`);
    }
    if (event.kind === 'reply' && event.reply.type === 'result') return this.finishStep(event.reply, durationMs, oomBefore);
    if (event.kind === 'reply') {
      await this.close('the runner refused a request');
      throw new SandboxError('runner_failed', `the session runner refused step ${id}: ${(event.reply as { message: string }).message}`);
    }
    return { result: await this.stoppedStep(id, request, cause, quotaUsed, durationMs, oomBefore, options.quotaBytes), ended: 'the step ended it' };
  }

  private async finishStep(reply: SessionResultReply, durationMs: number, oomBefore: number): Promise<{ result: StepResult; ended?: string }> {
    const { type: _type, id, restored, displays, ...fields } = reply;
    const notes = [...fields.notes];
    if (restored === 'checkpoint') {
      notes.unshift(
        'Variables were restored from the checkpoint saved after an earlier step (the previous sandbox session had ended), ' +
          'not kept in memory: objects that could not be saved are gone.',
      );
    }
    const result = boundStepResult({ ...fields, ...sessionDisplays(displays), notes, stepId: id, exitCode: 0 }, { maxOutputBytes: this.options.maxOutputBytes, durationMs });
    const group = this.options.slot.cgroup;
    let ended: string | undefined;
    if (group !== undefined && group.oomKills() > oomBefore) ended = 'the sandbox ran out of memory (SANDBOX_MEMORY_MB)';
    const leftovers = group?.processes().filter((pid) => !this.baseline.has(pid)) ?? [];
    if (ended === undefined && leftovers.length > 0) ended = `${leftovers.length} processes of the step were still running after its result`;
    if (ended !== undefined) {
      result.notes.push(`The sandbox session was restarted because ${ended}; the next step gets the variables saved after this one.`);
      await this.close(ended);
    }
    return { result, ended };
  }

  private async stoppedStep(
    id: string,
    request: StepRequest,
    cause: StopCause | undefined,
    quotaUsed: number,
    durationMs: number,
    oomBefore: number,
    quotaBytes: number | undefined,
  ): Promise<StepResult> {
    const end = this.ended!;
    const stepDir = join(this.options.workspaceDir, '.oi', 'steps', id);
    const output = await readPartialOutput(this.options.workspaceDir, stepDir, this.options.maxOutputBytes);
    const limit = await interpretExit(stepDir, { code: end.code, signal: end.signal, stderrTail: this.stderrTail });
    await removeStepDirectory(this.options.workspaceDir, stepDir).catch(() => {});
    // With a cgroup the kernel's OOM count tells a memory kill from any other SIGKILL (kill -9, a crash).
    const group = this.options.slot.cgroup;
    const outOfMemory = group !== undefined && group.oomKills() > oomBefore;
    await this.close(cause ?? 'the runner ended');
    return stoppedResult({
      stepId: id,
      cause: cause ?? (end.problem === undefined ? undefined : 'protocol'),
      limit: outOfMemory ? 'memory' : group !== undefined && limit === 'memory' ? undefined : limit,
      limits: this.options.limits,
      timeoutSec: request.timeoutSec,
      durationMs,
      exitCode: end.code ?? 128,
      output,
      quota: quotaBytes === undefined ? undefined : { usedBytes: quotaUsed, quotaBytes },
      endDescription: this.describeEnd(),
      note: 'The sandbox session was ended with this step: the next step starts a new one with the variables saved after the previous step.',
    });
  }

  /** Ends the session: kills every process of its jail and gives the slot back. */
  close(reason: string): Promise<void> {
    this.closing ??= (async () => {
      this.options.logger.debug('sandbox session ends', { reason, pid: this.child.pid });
      await this.kill();
      await this.options.releaseSlot(this.options.slot);
    })();
    return this.closing;
  }

  private async kill(): Promise<void> {
    const group = this.options.slot.cgroup;
    if (group !== undefined) await group.kill();
    if (this.child.pid !== undefined && this.ended === undefined) {
      try {
        process.kill(-this.child.pid, 'SIGKILL'); // its process group (spawned detached)
      } catch {
        // gone already
      }
    }
  }

  private send(line: string): void {
    if (this.ended === undefined) this.child.stdin?.write(line);
  }

  private onLine(line: string): void {
    const parsed = parseSessionReply(line);
    if ('problem' in parsed) return this.broken(parsed.problem);
    this.listener?.({ kind: 'reply', reply: parsed.reply });
  }

  /** The protocol broke (a reply too long, not JSON, not the schema): the session cannot be trusted. */
  private broken(problem: string): void {
    this.options.logger.warn('sandbox session protocol failure', { problem });
    this.emit({ kind: 'ended', code: null, signal: null, problem });
    void this.kill();
  }

  private emit(event: Event): void {
    if (event.kind === 'ended') {
      if (this.ended !== undefined) return;
      this.ended = event;
    }
    this.listener?.(event);
  }

  /** The next reply that matches, or the end of the session (whichever comes first). */
  private next(matches: (reply: SessionReply) => boolean): Promise<Event> {
    if (this.ended !== undefined) return Promise.resolve(this.ended);
    return new Promise((resolve) => {
      this.listener = (event) => {
        if (event.kind === 'reply' && !matches(event.reply)) return;
        this.listener = undefined;
        resolve(event);
      };
    });
  }

  private describeEnd(): string {
    const end = this.ended;
    if (end === undefined) return 'still running';
    if (end.problem !== undefined) return end.problem;
    // bwrap reports a child killed by signal N as exit status 128 + N.
    const signal = end.signal ?? (end.code !== null && end.code > 128 ? signalName(end.code - 128) : undefined);
    const how = signal !== undefined ? `killed by ${signal}` : `exit status ${end.code}`;
    const last = this.stderrTail.trim().split('\n').pop();
    return last ? `${how}: ${last}` : how;
  }
}
