import type { protos, v2 } from '@google-cloud/run';
import { retryTransient } from '../gcp/google-errors.js';

/**
 * Watches the executions a Sandbox starts, from the outside: the post-deploy check runs its step through the
 * Sandbox seam (`sandbox.session(workspace).run(...)`), whatever the backend does inside (one execution per step
 * today, one per session with issue 13), and sees the Cloud Run side through the client the sandbox was given:
 * each `runJob` is timed, gets `OI_TIMINGS=1` added to its env overrides (the entrypoint then records when it
 * mounted the prefix: sandbox-image/entrypoint.sh) and yields its execution's name, which is then read back with
 * `getExecution` (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions/get).
 */

type Execution = protos.google.cloud.run.v2.IExecution;
type RunJobRequest = protos.google.cloud.run.v2.IRunJobRequest;

export interface WatchedRun {
  /** performance.now() before runJob was sent, and when Cloud Run accepted it (the long-running operation exists). */
  requestedAt: number;
  acceptedAt?: number;
  executionName?: string;
  /** performance.now() when the execution was first seen started (`startTime` set), by polling getExecution. */
  seenStartedAt?: number;
  error?: unknown;
}

export class ExecutionWatch {
  readonly runs: WatchedRun[] = [];
  private pollers: Promise<void>[] = [];
  private stopped = false;

  constructor(
    private readonly executionsClient: v2.ExecutionsClient,
    private readonly pollIntervalMs = 500,
  ) {}

  /** The jobs client to give the sandbox: every method as it is, runJob observed. */
  wrap(client: v2.JobsClient): v2.JobsClient {
    const runJob = (request: RunJobRequest, options?: unknown) => this.runJob(client, request, options);
    return new Proxy(client, {
      get: (target, property, receiver) => (property === 'runJob' ? runJob : Reflect.get(target, property, receiver)),
    });
  }

  /** The execution as Cloud Run describes it now (template with the env overrides, times, counts). */
  async read(name: string): Promise<Execution> {
    const [execution] = await retryTransient(() => this.executionsClient.getExecution({ name }));
    return execution;
  }

  /** Stops polling for start times (the step is over). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.pollers);
  }

  private async runJob(client: v2.JobsClient, request: RunJobRequest, options: unknown): Promise<unknown> {
    const run: WatchedRun = { requestedAt: performance.now() };
    this.runs.push(run);
    try {
      const result = await client.runJob(withTimings(request), options as never);
      run.acceptedAt = performance.now();
      run.executionName = (result[0].metadata as { name?: string } | null)?.name ?? undefined;
      if (run.executionName !== undefined) this.pollers.push(this.pollStart(run, run.executionName));
      return result;
    } catch (error) {
      run.error = error;
      throw error;
    }
  }

  private async pollStart(run: WatchedRun, name: string): Promise<void> {
    while (!this.stopped) {
      const execution = await this.read(name).catch(() => undefined);
      if (execution?.startTime || execution?.completionTime) {
        run.seenStartedAt = performance.now();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, this.pollIntervalMs));
    }
  }
}

/** The request with OI_TIMINGS=1 added to the first container's env overrides. */
function withTimings(request: RunJobRequest): RunJobRequest {
  const [first, ...rest] = request.overrides?.containerOverrides ?? [{}];
  const env = [...(first?.env ?? []).filter((entry) => entry.name !== 'OI_TIMINGS'), { name: 'OI_TIMINGS', value: '1' }];
  return { ...request, overrides: { ...request.overrides, containerOverrides: [{ ...first, env }, ...rest] } };
}

/** Epoch milliseconds of a protobuf Timestamp as the REST client decodes it (`seconds` as text). */
export function timestampMs(timestamp: protos.google.protobuf.ITimestamp | null | undefined): number | undefined {
  if (timestamp?.seconds === undefined || timestamp.seconds === null) return undefined;
  return Number(timestamp.seconds) * 1000 + (timestamp.nanos ?? 0) / 1e6;
}
