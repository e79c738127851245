import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { describeError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { StateConflictError } from '../../workspace/workspace.js';
import { parseSessionReply, sessionDisplays, stepRequestLine, stopRequestLine, stoppedStepResult, type SessionResultReply } from '../runner-protocol.js';
import { SandboxError, type ResourceLimits, type RunOptions, type StepRequest, type StepResult } from '../sandbox.js';
import { isEnded, type ExecutionState, type JobExecutions } from './job-executions.js';
import type { LiveSession, SessionTiming } from './live-session.js';
import { MAILBOX_MAX_BYTES, type MailboxRead } from './session-mailbox.js';

/**
 * One step in a live Cloud Run session: the request goes into the mailbox, the result is read as soon as it is
 * there (read every 25 ms at first, then less often, at least every `resultPollMs`), and the execution's state is read every
 * `executionCheckMs`, only to notice that it died. Stop and the timeout's backstop send the runner's `stop`
 * request through the mailbox; a step that does not end within `stopGraceMs` after it gets its execution
 * cancelled. Every duration is the controller's own: from the request (or, for a session still starting, from
 * the moment its runner was seen ready) to the result.
 */

export interface StepContext {
  executions: JobExecutions;
  limits: ResourceLimits;
  maxOutputBytes: number;
  timing: SessionTiming;
  logger: Logger;
}

/**
 * `result`: the session lives on. `ended`: the step is reported and the session is gone (the next step starts a
 * new one from the checkpoint). `not-taken`: the session ended (idle, deadline) before it took the request,
 * which may run in a new session.
 */
export type StepOutcome = { kind: 'result'; result: StepResult } | { kind: 'ended'; result: StepResult } | { kind: 'not-taken' };

interface WaitingStep {
  id: string;
  seq: number;
  request: StepRequest;
  requestedAt: number;
  /** When the step could start: the request's time, or when the runner was seen ready. */
  startedAt: number | undefined;
  /** The last time the runner was seen not ready yet: the step cannot have started before. */
  notReadyAt: number;
  /** Why a stop request was sent, if one was. */
  stopped?: 'abort' | 'timeout';
}

type Wait =
  | { kind: 'reply'; read: Exclude<MailboxRead, { kind: 'absent' }> }
  | { kind: 'execution-ended'; state: ExecutionState }
  | { kind: 'stop-expired' }
  | { kind: 'start-timeout' };

const ENDED_NOTE = 'The sandbox session was ended with this step: the next step starts a new one with the variables saved after the previous step.';
const RESTORED_NOTE =
  'Variables were restored from the checkpoint saved after an earlier step (the previous sandbox session had ended), ' +
  'not kept in memory: objects that could not be saved are gone.';
const relayEndedSchema = z.object({ type: z.literal('ended'), reason: z.string().max(100), detail: z.string().max(500) });
const closedSchema = z.object({ type: z.literal('closed'), reason: z.string(), next: z.number() });

export async function runStepInSession(context: StepContext, live: LiveSession, request: StepRequest, options: RunOptions): Promise<StepOutcome> {
  if (options.signal?.aborted) throw cancelled();
  const id = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
  const requestedAt = Date.now();
  let seq: number;
  try {
    seq = await live.send(stepRequestLine(id, request, context.limits, context.maxOutputBytes), 'step');
  } catch (error) {
    // The record moved on under us (another controller wrote it): the request was not written; the caller
    // finds the thread's session again and sends it there.
    if (!(error instanceof StateConflictError)) throw error;
    live.ended = 'its record was changed by another controller';
    return { kind: 'not-taken' };
  }
  const step: WaitingStep = { id, seq, request, requestedAt, startedAt: live.readySeen ? requestedAt : undefined, notReadyAt: requestedAt };
  const wait = await waitForReply(context, live, step, options.signal);
  if (wait.kind === 'reply') return fromReply(context, live, step, wait.read);
  if (wait.kind === 'execution-ended') return afterExecutionEnded(context, live, step, wait.state);
  await context.executions.cancel(live.executionName, context.logger);
  live.ended = wait.kind;
  if (wait.kind === 'start-timeout') {
    throw new SandboxError('start_failed', `the Cloud Run session ${live.record.sessionId} did not start within ${context.timing.startTimeoutMs / 1000} s`, {
      userMessage: 'The sandbox could not be started in time (the Cloud Run execution did not start).',
    });
  }
  if (step.stopped === 'abort') throw cancelled();
  return { kind: 'ended', result: timeoutResult(context, step, { stdout: '', stderr: '', truncated: false }, [ENDED_NOTE]) };
}

async function waitForReply(context: StepContext, live: LiveSession, step: WaitingStep, signal: AbortSignal | undefined): Promise<Wait> {
  const { timing } = context;
  let pollMs = 25;
  let nextCheck = Date.now() + timing.executionCheckMs;
  let stopSentAt: number | undefined;
  for (;;) {
    const read = await live.mailbox.readResult(step.seq);
    if (read.kind !== 'absent') return { kind: 'reply', read };
    if (!live.readySeen) {
      if ((await live.mailbox.readReady()).kind === 'absent') step.notReadyAt = Date.now();
      else {
        live.readySeen = true;
        step.startedAt = Date.now();
      }
    }
    const now = Date.now();
    const overdue = step.startedAt !== undefined && now - step.startedAt > step.request.timeoutSec * 1000 + timing.timeoutGraceMs;
    if (stopSentAt === undefined && (signal?.aborted || overdue)) {
      step.stopped = signal?.aborted ? 'abort' : 'timeout';
      // If the stop cannot be sent, the grace period runs out and the execution is cancelled instead.
      await live.send(stopRequestLine(step.id), 'control').catch((error: unknown) =>
        context.logger.warn('stop request not sent', { error: describeError(error) }),
      );
      stopSentAt = now;
    }
    if (stopSentAt !== undefined && now - stopSentAt > timing.stopGraceMs) return { kind: 'stop-expired' };
    if (step.startedAt === undefined && now - step.requestedAt > timing.startTimeoutMs) return { kind: 'start-timeout' };
    if (now >= nextCheck) {
      const state = await context.executions.state(live.executionName);
      if (isEnded(state)) return { kind: 'execution-ended', state };
      nextCheck = now + timing.executionCheckMs;
    }
    await sleep(pollMs, stopSentAt === undefined ? signal : undefined);
    pollMs = Math.min(timing.resultPollMs, Math.round(pollMs * 1.5));
  }
}

function fromReply(context: StepContext, live: LiveSession, step: WaitingStep, read: Exclude<MailboxRead, { kind: 'absent' }>): StepOutcome {
  const durationMs = Date.now() - (step.startedAt ?? step.notReadyAt);
  if (read.kind === 'too-large') {
    const value = `The step's result was larger than ${MAILBOX_MAX_BYTES / (1024 * 1024)} MB (${read.size} bytes) and was refused: print less (write large outputs to files instead).`;
    return { kind: 'result', result: failedResult(step.id, durationMs, { name: 'ResultRefused', value }, []) };
  }
  const ended = relayEndedSchema.safeParse(safeJson(read.text));
  if (ended.success) {
    live.ended = ended.data.reason;
    const value = `The sandbox session ended during this step (${ended.data.detail}).`;
    return { kind: 'ended', result: failedResult(step.id, durationMs, { name: 'RunnerEnded', value }, [ENDED_NOTE]) };
  }
  const parsed = parseSessionReply(read.text);
  if ('problem' in parsed || parsed.reply.type === 'ready' || (parsed.reply.type === 'result' && parsed.reply.id !== step.id)) {
    const problem = 'problem' in parsed ? parsed.problem : 'the reply belongs to another request';
    context.logger.warn('sandbox session protocol failure', { problem, session: live.record.sessionId });
    live.ended = 'protocol';
    void context.executions.cancel(live.executionName, context.logger);
    const value = `The step's result could not be used (${problem}).`;
    return { kind: 'ended', result: failedResult(step.id, durationMs, { name: 'ResultRefused', value }, [ENDED_NOTE]) };
  }
  const reply = parsed.reply;
  if (reply.type === 'error') {
    throw new SandboxError('runner_failed', `the session runner refused step ${step.id}: ${reply.message}`, {
      userMessage: 'The sandbox refused the step.',
    });
  }
  if (step.stopped === 'abort') throw cancelled();
  const result = toStepResult(reply, durationMs);
  if (step.stopped === 'timeout' && result.error?.name === 'KeyboardInterrupt') {
    const output = { stdout: result.stdout, stderr: result.stderr, truncated: result.outputTruncated };
    return { kind: 'result', result: { ...timeoutResult(context, step, output, result.notes), files: result.files } };
  }
  return { kind: 'result', result };
}

async function afterExecutionEnded(context: StepContext, live: LiveSession, step: WaitingStep, state: ExecutionState): Promise<StepOutcome> {
  // The relay writes a result for a step it could not finish before it exits: read once more.
  const read = await live.mailbox.readResult(step.seq);
  if (read.kind !== 'absent') return fromReply(context, live, step, read);
  live.ended = `execution ${state.status}`;
  const closedRead = await live.mailbox.readClosed();
  const closed = closedRead.kind === 'text' ? closedSchema.safeParse(safeJson(closedRead.text)) : undefined;
  if (closed?.success && ['idle', 'deadline'].includes(closed.data.reason) && closed.data.next <= step.seq) return { kind: 'not-taken' };
  const how = `the Cloud Run execution ${state.status}${state.message ? `: ${state.message}` : ''}`;
  if (!live.readySeen) {
    throw new SandboxError('start_failed', `the Cloud Run session ${live.record.sessionId} ended before its runner was ready (${how})`, {
      userMessage: 'The sandbox could not be started (the Cloud Run execution failed).',
    });
  }
  if (step.stopped === 'abort') throw cancelled();
  const durationMs = Date.now() - (step.startedAt ?? step.notReadyAt);
  return { kind: 'ended', result: failedResult(step.id, durationMs, { name: 'RunnerEnded', value: `The sandbox session ended during this step (${how}).` }, [ENDED_NOTE]) };
}

function toStepResult(reply: SessionResultReply, durationMs: number): StepResult {
  const { type: _type, id, restored, displays, ...fields } = reply;
  const notes = restored === 'checkpoint' ? [RESTORED_NOTE, ...fields.notes] : fields.notes;
  return { ...fields, ...sessionDisplays(displays), notes, stepId: id, exitCode: 0, durationMs };
}

/** A step the controller had to stop at its timeout: the same words as any backend's timeout. */
function timeoutResult(context: StepContext, step: WaitingStep, output: { stdout: string; stderr: string; truncated: boolean }, notes: string[]): StepResult {
  const durationMs = Date.now() - (step.startedAt ?? step.notReadyAt);
  const result = stoppedStepResult({ stepId: step.id, limit: 'timeout', limits: context.limits, timeoutSec: step.request.timeoutSec, durationMs, exitCode: -1, output, note: '' });
  return { ...result, notes };
}

function failedResult(stepId: string, durationMs: number, error: { name: string; value: string }, notes: string[]): StepResult {
  return {
    stepId,
    exitCode: -1,
    stdout: '',
    stderr: '',
    outputTruncated: false,
    error: { ...error, traceback: '' },
    durationMs,
    figures: [],
    files: [],
    unsaved: [],
    notes,
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function cancelled(): SandboxError {
  return new SandboxError('cancelled', 'the step was cancelled', { userMessage: 'The step was cancelled.' });
}

/** Waits `ms`, or less when `signal` aborts meanwhile. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
