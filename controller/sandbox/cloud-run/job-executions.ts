import type { protos, v2 } from '@google-cloud/run';
import { describeError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { SandboxError } from '../sandbox.js';

/**
 * The sandbox job's executions through the Cloud Run Admin API v2: start one with per-execution overrides,
 * read its state, cancel it. Both ways of using the job go through here: one execution per step
 * (CloudRunSandbox's one-shot mode) and one execution per thread session (cloud-run-session.ts).
 */

/** The part of the client's long-running operation used here (runJob's LRO: metadata and result are Executions). */
export interface ExecutionOperation {
  metadata: unknown;
  promise(): Promise<[protos.google.cloud.run.v2.IExecution, ...unknown[]]>;
}

export type ExecutionStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface ExecutionState {
  status: ExecutionStatus;
  /** The `Completed` condition's message once it ended (e.g. why it failed). */
  message?: string;
}

export interface JobExecutionsOptions {
  jobsClient: v2.JobsClient;
  executionsClient: v2.ExecutionsClient;
  project: string;
  region: string;
  job: string;
  logger: Logger;
}

export class JobExecutions {
  private readonly jobName: string;

  constructor(private readonly options: JobExecutionsOptions) {
    this.jobName = `projects/${options.project}/locations/${options.region}/jobs/${options.job}`;
  }

  /**
   * runJob with per-execution overrides: the environment (never a Slack or OpenAI secret) and the task timeout
   * (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs/run). Resolves once Cloud Run
   * accepted the run, with the execution's name (the operation's metadata) and its long-running operation,
   * which is done when the execution is.
   */
  async start(
    env: Record<string, string>,
    taskTimeoutSec: number,
    longrunning?: Record<string, number>,
  ): Promise<{ name: string | undefined; operation: ExecutionOperation }> {
    try {
      const [operation] = await this.options.jobsClient.runJob(
        {
          name: this.jobName,
          overrides: {
            containerOverrides: [{ env: Object.entries(env).map(([name, value]) => ({ name, value })) }],
            taskCount: 1,
            timeout: { seconds: taskTimeoutSec },
          },
        },
        // Cast: gax types `longrunning` as full BackoffSettings (RPC timeouts too); polling reads only these.
        longrunning === undefined ? undefined : ({ longrunning } as never),
      );
      const name = (operation.metadata as { name?: string } | null)?.name ?? undefined;
      return { name, operation };
    } catch (error) {
      throw new SandboxError('start_failed', `could not start Cloud Run job ${this.options.job}: ${describeError(error)}`, {
        cause: error,
        userMessage: 'The sandbox could not be started (Cloud Run job execution failed to start).',
      });
    }
  }

  /**
   * Where an execution is (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions):
   * ended once it has a completion time or a finished task; running once its task started.
   */
  async state(name: string): Promise<ExecutionState> {
    const [execution] = await this.options.executionsClient.getExecution({ name });
    const message = execution.conditions?.find((condition) => condition.type === 'Completed')?.message ?? undefined;
    if (Number(execution.cancelledCount ?? 0) > 0) return { status: 'cancelled', message };
    if (Number(execution.failedCount ?? 0) > 0) return { status: 'failed', message };
    if (Number(execution.succeededCount ?? 0) > 0) return { status: 'succeeded', message };
    if (execution.completionTime) return { status: 'failed', message };
    return { status: execution.startTime || Number(execution.runningCount ?? 0) > 0 ? 'running' : 'pending' };
  }

  /** Cancels an execution; one that has ended already (FAILED_PRECONDITION) or cannot be cancelled is logged. */
  async cancel(name: string, logger: Logger = this.options.logger): Promise<void> {
    try {
      await this.options.executionsClient.cancelExecution({ name });
      logger.info('cloud run execution cancelled', { execution: name });
    } catch (error) {
      logger.warn('cancelling the Cloud Run execution failed', { execution: name, error: describeError(error) });
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.options.jobsClient.close(), this.options.executionsClient.close()]);
  }
}

export function isEnded(state: ExecutionState): boolean {
  return state.status !== 'pending' && state.status !== 'running';
}
