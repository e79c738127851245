import { randomBytes } from 'node:crypto';
import type { v2 } from '@google-cloud/run';
import { describeError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { INTERNAL_DIR, type Workspace } from '../../workspace/workspace.js';
import { PerStepSession, type OneStepRunner } from '../per-step-session.js';
import { DEFAULT_MAX_OUTPUT_BYTES, parseRunnerResult, stepRequestJson, stoppedStepResult } from '../runner-protocol.js';
import { SandboxError, type ResourceLimits, type RunOptions, type Sandbox, type SandboxSession, type StepRequest, type StepResult } from '../sandbox.js';
import { CloudRunSessions } from './cloud-run-session.js';
import type { TokenMinter } from './downscoped-token.js';
import { JobExecutions, type ExecutionOperation } from './job-executions.js';
import { DEFAULT_SESSION_TIMING, type SessionTiming } from './live-session.js';

/**
 * CloudRunSandbox (docs/architecture.md, Isolation on Cloud Run): every step runs in an execution of the sandbox
 * job, which mounts the thread's GCS prefix with gcsfuse, with a token downscoped to that prefix passed in the
 * per-execution env overrides (never a Slack or OpenAI secret).
 * - Sessions (SANDBOX_SESSION=on, the default; cloud-run-session.ts): one execution per thread session, started
 *   at the turn's start and serving the thread's steps through a mailbox in its prefix.
 * - One execution per step (SANDBOX_SESSION=off, below): the controller writes the step request into the
 *   thread's prefix, starts the job, waits for the execution and reads result.json back.
 */

export interface CloudRunSandboxOptions {
  jobsClient: v2.JobsClient;
  executionsClient: v2.ExecutionsClient;
  project: string;
  region: string;
  job: string;
  tokenMinter: TokenMinter;
  limits: ResourceLimits;
  logger: Logger;
  /** Added to the step's timeout for the task timeout: container start, mount, state load, unmount. */
  startupMarginSec?: number;
  /** stdout/stderr bytes kept per step (head and tail). */
  maxOutputBytes?: number;
  /** How often a one-step execution's operation is polled (the client backs off from `initialMs` up to `maxMs`). */
  polling?: { initialMs: number; maxMs: number };
  /** Warm sessions: SANDBOX_SESSION_IDLE_SEC, STEP_TIMEOUT_SEC and the timing (live-session.ts). Absent: one execution per step. */
  session?: { idleSec: number; maxStepSec: number; timing?: Partial<SessionTiming> };
}

const DEFAULT_STARTUP_MARGIN_SEC = 120;
/** What a step loses when Cloud Run had to kill its execution (it wrote no result). */
const STOPPED_NOTE = 'The sandbox was stopped from outside: output and variables of this step were lost; files it wrote may be incomplete.';

type ExecutionOutcome = { kind: 'succeeded' } | { kind: 'cancelled' } | { kind: 'failed'; reason: string; cause?: unknown };

export class CloudRunSandbox implements Sandbox, OneStepRunner {
  private readonly executions: JobExecutions;
  private readonly sessions: CloudRunSessions | undefined;
  private readonly marginSec: number;

  constructor(private readonly options: CloudRunSandboxOptions) {
    this.executions = new JobExecutions(options);
    this.marginSec = options.startupMarginSec ?? DEFAULT_STARTUP_MARGIN_SEC;
    const session = options.session;
    if (session !== undefined) {
      this.sessions = new CloudRunSessions({
        executions: this.executions,
        tokenMinter: options.tokenMinter,
        limits: options.limits,
        maxOutputBytes: options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES,
        idleSec: session.idleSec,
        maxStepSec: session.maxStepSec,
        timing: { ...DEFAULT_SESSION_TIMING, ...session.timing },
        logger: options.logger,
      });
    }
  }

  /** The thread's warm session (it starts warming up now), or one execution per step. */
  session(workspace: Workspace): SandboxSession {
    if (workspace.location.kind !== 'gcs') return new PerStepSession(this, workspace); // refused at its first step
    return this.sessions?.session(workspace) ?? new PerStepSession(this, workspace);
  }

  /**
   * Ends the thread's warm session now rather than at its idle time, and waits for its execution to end; undefined
   * when the thread has none (or SANDBOX_SESSION=off). Used by the post-deploy check, which cleans up after itself.
   */
  endSession(workspace: Workspace): Promise<{ executionName: string; status: string } | undefined> {
    return this.sessions?.end(workspace) ?? Promise.resolve(undefined);
  }

  /** Runs one step in a job execution of its own (one-shot mode): this is where a Cloud Run execution starts. */
  async run(workspace: Workspace, request: StepRequest, options: RunOptions = {}): Promise<StepResult> {
    const location = workspace.location;
    if (location.kind !== 'gcs') {
      throw new SandboxError('unsupported_workspace', 'the Cloud Run sandbox needs a GCS workspace (STORAGE_BACKEND=gcs)');
    }
    const stepId = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
    const stepDir = `${INTERNAL_DIR}/steps/${stepId}`;
    try {
      return await this.runStep(workspace, location, request, options, stepId, stepDir);
    } finally {
      // The step's request/result objects are read; leaving them would grow .oi/steps forever.
      await removeStepObjects(workspace, stepDir).catch((error: unknown) =>
        this.options.logger.warn('step objects not removed', { stepId, error: describeError(error) }),
      );
    }
  }

  private async runStep(
    workspace: Workspace,
    location: { bucket: string; prefix: string },
    request: StepRequest,
    options: RunOptions,
    stepId: string,
    stepDir: string,
  ): Promise<StepResult> {
    const logger = this.options.logger.child({ stepId });
    const { limits, maxOutputBytes = DEFAULT_MAX_OUTPUT_BYTES } = this.options;
    await workspace.write(`${stepDir}/request.json`, stepRequestJson(stepId, request, limits, maxOutputBytes));
    const taskTimeoutSec = request.timeoutSec + this.marginSec;
    const token = await this.options.tokenMinter.mint(location.prefix, { validForSec: taskTimeoutSec + 60 });
    throwIfAborted(options.signal);

    const started = Date.now();
    const operation = await this.startExecution(location, stepId, token, taskTimeoutSec);
    const executionName = (operation.metadata as { name?: string } | null)?.name ?? undefined;
    logger.info('cloud run execution started', { execution: executionName });

    const outcome = await this.waitForExecution(operation, executionName, options.signal, logger);
    const elapsedMs = Date.now() - started;
    if (outcome.kind === 'cancelled') {
      throw new SandboxError('cancelled', `Cloud Run execution ${executionName ?? '?'} was cancelled`, { userMessage: 'The step was cancelled.' });
    }
    if (outcome.kind === 'failed') {
      // runner.py stops user code at timeoutSec itself; Cloud Run kills the task at timeoutSec + margin.
      // A failure that late means the code ignored the first stop (blocked in native code) and was killed.
      if (elapsedMs >= taskTimeoutSec * 1000) {
        return stoppedStepResult({ stepId, limit: 'timeout', limits, timeoutSec: request.timeoutSec, durationMs: elapsedMs, exitCode: -1, note: STOPPED_NOTE });
      }
      throw new SandboxError('runner_failed', `Cloud Run execution ${executionName ?? '?'} failed: ${outcome.reason}`, {
        cause: outcome.cause,
        userMessage: 'The sandbox failed while running the step (the Cloud Run execution failed).',
      });
    }
    logger.info('cloud run execution finished', { execution: executionName, durationMs: elapsedMs });
    return this.readResult(workspace, stepDir, stepId);
  }

  /** runJob with per-execution overrides: the thread's prefix, the step id and its downscoped token. */
  private async startExecution(
    location: { bucket: string; prefix: string },
    stepId: string,
    token: { token: string; expiresAt: number },
    taskTimeoutSec: number,
  ): Promise<ExecutionOperation> {
    const env = {
      OI_BUCKET: location.bucket,
      OI_PREFIX: location.prefix,
      OI_STEP_ID: stepId,
      OI_TOKEN: token.token,
      OI_TOKEN_EXPIRES_AT: String(Math.floor(token.expiresAt / 1000)),
    };
    const { operation } = await this.executions.start(env, taskTimeoutSec, this.backoff(taskTimeoutSec));
    return operation;
  }

  /** Closes the clients. Live sessions are left running: they idle out, or the next controller reuses them. */
  async close(): Promise<void> {
    await this.executions.close();
  }

  private async waitForExecution(
    operation: ExecutionOperation,
    executionName: string | undefined,
    signal: AbortSignal | undefined,
    logger: Logger,
  ): Promise<ExecutionOutcome> {
    const completion = operation.promise().then(
      ([execution]) => {
        if (Number(execution.cancelledCount ?? 0) > 0) return { kind: 'cancelled' as const };
        if (Number(execution.failedCount ?? 0) > 0 || Number(execution.succeededCount ?? 0) < 1) {
          return { kind: 'failed' as const, reason: `${execution.failedCount ?? 0} task(s) failed` };
        }
        return { kind: 'succeeded' as const };
      },
      (error: unknown) => ({ kind: 'failed' as const, reason: describeError(error), cause: error }),
    );
    if (signal === undefined) return completion;
    let onAbort: () => void = () => {};
    const aborted = new Promise<'aborted'>((resolve) => {
      onAbort = () => resolve('aborted');
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    const first = await Promise.race([completion, aborted]);
    signal.removeEventListener('abort', onAbort);
    if (first !== 'aborted') return first;
    if (executionName === undefined) logger.warn('cannot cancel a Cloud Run execution whose name is unknown');
    else await this.executions.cancel(executionName, logger);
    return { kind: 'cancelled' };
  }

  private async readResult(workspace: Workspace, stepDir: string, stepId: string): Promise<StepResult> {
    let text: string;
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of await workspace.read(`${stepDir}/result.json`)) chunks.push(chunk as Buffer);
      text = Buffer.concat(chunks).toString('utf8');
    } catch (error) {
      throw unreadableResult(stepId, describeError(error), error);
    }
    const parsed = parseRunnerResult(text, stepId);
    if ('problem' in parsed) throw unreadableResult(stepId, parsed.problem);
    return parsed.result;
  }

  private backoff(taskTimeoutSec: number): Record<string, number> {
    const polling = this.options.polling ?? { initialMs: 1000, maxMs: 5000 };
    return {
      initialRetryDelayMillis: polling.initialMs,
      retryDelayMultiplier: 1.5,
      maxRetryDelayMillis: polling.maxMs,
      // Cloud Run ends the task at its timeout; this only guards against an operation that never completes.
      totalTimeoutMillis: (taskTimeoutSec + 600) * 1000,
    };
  }
}

function unreadableResult(stepId: string, problem: string, cause?: unknown): SandboxError {
  return new SandboxError('runner_failed', `step ${stepId} finished without a readable result.json: ${problem}`, {
    cause,
    userMessage: 'The sandbox finished the step but its result could not be read.',
  });
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new SandboxError('cancelled', 'the step was cancelled before it started', { userMessage: 'The step was cancelled.' });
}

async function removeStepObjects(workspace: Workspace, stepDir: string): Promise<void> {
  const entries = await workspace.list({ includeInternal: true });
  for (const entry of entries) if (entry.path.startsWith(`${stepDir}/`)) await workspace.delete(entry.path);
}
