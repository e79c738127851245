import { randomBytes } from 'node:crypto';
import type { protos, v2 } from '@google-cloud/run';
import type { Logger } from '../../logger.js';
import { INTERNAL_DIR, type Workspace } from '../../workspace/workspace.js';
import type { TokenMinter } from './downscoped-token.js';
import {
  DEFAULT_MAX_OUTPUT_BYTES,
  SandboxError,
  type ResourceLimits,
  type RunOptions,
  type RunnerResultFile,
  type Sandbox,
  type StepLimitKind,
  type StepRequest,
  type StepRequestFile,
  type StepResult,
} from '../sandbox.js';

/**
 * CloudRunSandbox: one Cloud Run Job execution per step (DESIGN.md, Isolation). The controller
 * writes the step request into the thread's GCS prefix, mints a token downscoped to that prefix and
 * starts the job with per-execution env overrides (bucket, prefix, step id, token: never a Slack or
 * OpenAI secret). The sandbox image mounts the prefix with gcsfuse and runs runner.py; the
 * controller waits for the execution and reads result.json back from the workspace.
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
  /** How often the execution is polled (the client backs off from `initialMs` up to `maxMs`). */
  polling?: { initialMs: number; maxMs: number };
}

/** The part of the client's long-running operation used here (runJob's LRO: metadata and result are Executions). */
interface ExecutionOperation {
  metadata: unknown;
  promise(): Promise<[protos.google.cloud.run.v2.IExecution, ...unknown[]]>;
}

const DEFAULT_STARTUP_MARGIN_SEC = 120;

export class CloudRunSandbox implements Sandbox {
  private readonly jobName: string;
  private readonly marginSec: number;

  constructor(private readonly options: CloudRunSandboxOptions) {
    this.jobName = `projects/${options.project}/locations/${options.region}/jobs/${options.job}`;
    this.marginSec = options.startupMarginSec ?? DEFAULT_STARTUP_MARGIN_SEC;
  }

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
        this.options.logger.warn('step objects not removed', { stepId, error: messageOf(error) }),
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
    const requestFile: StepRequestFile = {
      ...request,
      id: stepId,
      limits: this.options.limits,
      maxOutputBytes: this.options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES,
    };
    await workspace.write(`${stepDir}/request.json`, JSON.stringify(requestFile));
    const taskTimeoutSec = request.timeoutSec + this.marginSec;
    const token = await this.options.tokenMinter.mint(location.prefix, { validForSec: taskTimeoutSec + 60 });
    throwIfAborted(options.signal);

    const started = Date.now();
    let operation: ExecutionOperation;
    try {
      [operation] = await this.options.jobsClient.runJob(
        {
          name: this.jobName,
          overrides: {
            containerOverrides: [
              {
                env: [
                  { name: 'OI_BUCKET', value: location.bucket },
                  { name: 'OI_PREFIX', value: location.prefix },
                  { name: 'OI_STEP_ID', value: stepId },
                  { name: 'OI_TOKEN', value: token.token },
                  { name: 'OI_TOKEN_EXPIRES_AT', value: String(Math.floor(token.expiresAt / 1000)) },
                ],
              },
            ],
            taskCount: 1,
            timeout: { seconds: taskTimeoutSec },
          },
        },
        // Cast: gax types `longrunning` as full BackoffSettings (RPC timeouts too); polling reads only these.
        { longrunning: this.backoff(taskTimeoutSec) } as never,
      );
    } catch (error) {
      throw new SandboxError('start_failed', `could not start Cloud Run job ${this.options.job}: ${messageOf(error)}`, {
        cause: error,
        userMessage: 'The sandbox could not be started (Cloud Run job execution failed to start).',
      });
    }
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
      if (elapsedMs >= taskTimeoutSec * 1000) return timeoutResult(stepId, request.timeoutSec, elapsedMs);
      throw new SandboxError('runner_failed', `Cloud Run execution ${executionName ?? '?'} failed: ${outcome.reason}`, {
        cause: outcome.cause,
        userMessage: 'The sandbox failed while running the step (the Cloud Run execution failed).',
      });
    }
    logger.info('cloud run execution finished', { execution: executionName, durationMs: elapsedMs });
    return this.readResult(workspace, stepDir, stepId);
  }

  async close(): Promise<void> {
    await Promise.all([this.options.jobsClient.close(), this.options.executionsClient.close()]);
  }

  private async waitForExecution(
    operation: ExecutionOperation,
    executionName: string | undefined,
    signal: AbortSignal | undefined,
    logger: Logger,
  ): Promise<{ kind: 'succeeded' } | { kind: 'cancelled' } | { kind: 'failed'; reason: string; cause?: unknown }> {
    const completion = operation.promise().then(
      ([execution]) => {
        if (Number(execution.cancelledCount ?? 0) > 0) return { kind: 'cancelled' as const };
        if (Number(execution.failedCount ?? 0) > 0 || Number(execution.succeededCount ?? 0) < 1) {
          return { kind: 'failed' as const, reason: `${execution.failedCount ?? 0} task(s) failed` };
        }
        return { kind: 'succeeded' as const };
      },
      (error: unknown) => ({ kind: 'failed' as const, reason: messageOf(error), cause: error }),
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
    if (executionName === undefined) {
      logger.warn('cannot cancel a Cloud Run execution whose name is unknown');
    } else {
      try {
        await this.options.executionsClient.cancelExecution({ name: executionName });
        logger.info('cloud run execution cancelled', { execution: executionName });
      } catch (error) {
        logger.warn('cancelling the Cloud Run execution failed', { execution: executionName, error: messageOf(error) });
      }
    }
    return { kind: 'cancelled' };
  }

  private async readResult(workspace: Workspace, stepDir: string, stepId: string): Promise<StepResult> {
    let parsed: RunnerResultFile & { limit?: StepLimitKind };
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of await workspace.read(`${stepDir}/result.json`)) chunks.push(chunk as Buffer);
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof parsed;
    } catch (error) {
      throw new SandboxError('runner_failed', `step ${stepId} finished without a readable result.json: ${messageOf(error)}`, {
        cause: error,
        userMessage: 'The sandbox finished the step but its result could not be read.',
      });
    }
    if (parsed.id !== stepId) throw new SandboxError('runner_failed', `result.json belongs to step ${String(parsed.id)}, not ${stepId}`);
    const { id: _id, ...rest } = parsed;
    return { ...rest, stepId, exitCode: 0 };
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

function timeoutResult(stepId: string, timeoutSec: number, elapsedMs: number): StepResult {
  return {
    stepId,
    stdout: '',
    stderr: '',
    outputTruncated: false,
    error: { name: 'StepTimeout', value: `The step was stopped after ${timeoutSec} s (STEP_TIMEOUT_SEC).`, traceback: '' },
    durationMs: elapsedMs,
    figures: [],
    files: [],
    unsaved: [],
    notes: ['The sandbox was stopped from outside: output and variables of this step were lost; files it wrote may be incomplete.'],
    exitCode: -1,
    limit: 'timeout',
  };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new SandboxError('cancelled', 'the step was cancelled before it started', { userMessage: 'The step was cancelled.' });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function removeStepObjects(workspace: Workspace, stepDir: string): Promise<void> {
  const entries = await workspace.list({ includeInternal: true });
  for (const entry of entries) if (entry.path.startsWith(`${stepDir}/`)) await workspace.delete(entry.path);
}
