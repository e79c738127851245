import { taskTemplate, type FakeJobSettings } from './cloud-run-job.js';

/**
 * The v2 Execution resource as the Cloud Run fake reports it
 * (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions): times, counts and the
 * `ResourcesAvailable` / `Started` / `Completed` conditions, from the fake's record of one execution.
 */

export interface ExecutionRecord {
  name: string;
  /** The run's env overrides and task timeout (the execution's task template carries them). */
  env: Record<string, string>;
  timeoutSec: number;
  operationName: string;
  createdAt: Date;
  /** When the container started (unset while the execution waits for it). */
  startedAt?: Date;
  completedAt?: Date;
  outcome?: 'succeeded' | 'failed' | 'cancelled';
  done: boolean;
  succeeded: number;
  failed: number;
  cancelled: number;
  error?: { code: number; message: string };
}

export function executionResource(execution: ExecutionRecord, job: FakeJobSettings): Record<string, unknown> {
  const created = execution.createdAt.toISOString();
  const started = execution.startedAt?.toISOString();
  const completed = execution.completedAt?.toISOString();
  return {
    '@type': 'type.googleapis.com/google.cloud.run.v2.Execution',
    name: execution.name,
    uid: execution.operationName.split('/').at(-1),
    generation: '1',
    createTime: created,
    ...(started === undefined ? {} : { startTime: started }),
    ...(completed === undefined ? {} : { completionTime: completed }),
    updateTime: completed ?? started ?? created,
    job: execution.name.split('/')[5],
    parallelism: 1,
    taskCount: 1,
    reconciling: !execution.done,
    template: taskTemplate(job, Object.entries(execution.env).map(([name, value]) => ({ name, value })), execution.timeoutSec),
    conditions: executionConditions(execution, created, started, completed),
    observedGeneration: '1',
    runningCount: execution.done || started === undefined ? 0 : 1,
    succeededCount: execution.succeeded,
    failedCount: execution.failed,
    cancelledCount: execution.cancelled,
  };
}

/** `Completed` says how it ended (pending while it runs); `Started` is pending until the container started. */
function executionConditions(execution: ExecutionRecord, created: string, started: string | undefined, completed: string | undefined): Record<string, unknown>[] {
  const completion: Record<string, unknown> = { type: 'Completed', state: 'CONDITION_PENDING', lastTransitionTime: created };
  if (execution.outcome === 'succeeded') {
    Object.assign(completion, { state: 'CONDITION_SUCCEEDED', message: 'Execution completed successfully.', lastTransitionTime: completed });
  } else if (execution.outcome === 'failed') {
    const message = execution.error?.message ?? 'Task failed: the container exited with a non-zero status.';
    Object.assign(completion, { state: 'CONDITION_FAILED', message, executionReason: 'NON_ZERO_EXIT_CODE', lastTransitionTime: completed });
  } else if (execution.outcome === 'cancelled') {
    Object.assign(completion, { state: 'CONDITION_FAILED', message: 'The execution was cancelled.', executionReason: 'CANCELLED', lastTransitionTime: completed });
  }
  const start = started === undefined && !execution.done
    ? { type: 'Started', state: 'CONDITION_PENDING', lastTransitionTime: created }
    : { type: 'Started', state: 'CONDITION_SUCCEEDED', lastTransitionTime: started ?? completed };
  return [{ type: 'ResourcesAvailable', state: 'CONDITION_SUCCEEDED', lastTransitionTime: created }, start, completion];
}
