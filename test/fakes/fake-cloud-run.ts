import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { defaultJobSettings, jobResource, type FakeJobSettings } from './cloud-run-job.js';
import { executionResource, type ExecutionRecord } from './fake-execution-resource.js';
import type { FakeGcs } from './fake-gcs.js';
import { startContainer, type RunningContainer } from './fake-job-container.js';
import { closeServer, listenLocal, readBody, sendJson, waitUntil } from './http-helpers.js';

/**
 * Cloud Run Admin API v2 over REST, as @google-cloud/run's JobsClient / ExecutionsClient send it with
 * `fallback: true`: `POST /v2/projects/P/locations/R/jobs/J:run` returns a long-running Operation whose metadata
 * is the Execution and which is done when the execution is (`GET /v2/.../operations/ID` polls it),
 * `GET /v2/<execution>` reads an execution (its task template carries the run's env overrides),
 * `POST /v2/<execution>:cancel` cancels one (a finished execution is refused with 400 FAILED_PRECONDITION, as the
 * real API refuses a request the resource's state does not allow: https://cloud.google.com/apis/design/errors), and
 * the job answers `GET` and `:testIamPermissions` (cloud-run-job.ts; a job of another name is 404 NOT_FOUND). Executions report `createTime`, `startTime` (once the container
 * started), `completionTime`, counts and `conditions` like the v2 Execution resource
 * (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions).
 *
 * Timing like the real service (issue 13): the container starts `startDelayMs` after runJob (public
 * measurements put a trivial job at 8-9 s from runJob to completion; the benchmark uses 8 s, tests use small
 * values), and the task is killed at its timeout counted from its start. In `normal` mode the container really
 * runs (fake-job-container.ts): one step, or a session whose relay polls the mailbox in FakeGcs; like the real
 * token, the run's token then reaches only its OI_PREFIX in FakeGcs (gcs-access.ts).
 * Anything unexpected answers 501 and is recorded in `unexpected`; a run whose overrides break the isolation or
 * session rules answers 400 and is recorded in `violations`.
 */

export type FakeRunMode = 'normal' | 'fail' | 'error' | 'cancel' | 'hang' | 'kill-at-timeout';

export interface RecordedRun {
  executionName: string;
  env: Record<string, string>;
  timeoutSec: number;
  taskCount: number;
}

interface Execution extends ExecutionRecord {
  container?: RunningContainer;
  starting?: NodeJS.Timeout;
  finish: (outcome: 'succeeded' | 'failed' | 'cancelled', error?: { code: number; message: string }) => void;
}

const SESSION_VARIABLES = ['OI_SESSION_ID', 'OI_SESSION_IDLE_SEC', 'OI_SESSION_END_AT', 'OI_LIMITS', 'OI_TOKEN_EXPIRES_AT'];

export class FakeCloudRun {
  mode: FakeRunMode = 'normal';
  /** Milliseconds from runJob to the container's start (the runner starts after that). */
  startDelayMs = 0;
  readonly requests: { method: string; path: string; status: number }[] = [];
  readonly unexpected: string[] = [];
  readonly violations: string[] = [];
  readonly runs: RecordedRun[] = [];
  readonly cancelledExecutions: string[] = [];
  /** Cancel requests refused because the execution had finished already. */
  readonly refusedCancels: string[] = [];
  /** Output of the containers (entrypoint, relay, runner), for debugging a failing test. */
  lastRunnerOutput = '';
  /** The job as `GET` and `:testIamPermissions` describe it. */
  readonly jobSettings: FakeJobSettings = defaultJobSettings();
  private readonly jobCreated = new Date();
  private readonly executions = new Map<string, Execution>();
  private readonly events = new EventEmitter();
  private server: Server | undefined;
  private gcsUrl = '';

  constructor(
    private readonly options: {
      gcs: FakeGcs;
      project: string;
      region: string;
      job: string;
      /** The token the controller minted; any other OI_TOKEN is a violation. */
      expectedToken: string;
      python?: string;
      /**
       * OI_SESSION_PRELOAD for every session runner (docs/runner-protocol.md). Unset: the runner's own list, as
       * in the image. Each Cloud Run execution has its own vCPUs; this fake's all share the test machine's, so a
       * suite that starts many sessions at once may ask for fewer imports ahead of the first step.
       */
      sessionPreload?: string;
    },
  ) {
    this.events.setMaxListeners(0);
  }

  async start(): Promise<{ url: string; port: number }> {
    const { server, port } = await listenLocal((request, response) => this.handle(request, response));
    this.server = server;
    this.gcsUrl = this.options.gcs.url;
    return { url: `http://127.0.0.1:${port}`, port };
  }

  async close(): Promise<void> {
    for (const execution of this.executions.values()) if (!execution.done) execution.finish('cancelled');
    if (this.server !== undefined) await closeServer(this.server);
  }

  /** Names of the executions that have not completed (pending or running). */
  running(): string[] {
    return [...this.executions.values()].filter((execution) => !execution.done).map((execution) => execution.name);
  }

  /** The container dies (its instance crashed or ran out of memory): the execution fails, nothing more is written. */
  crash(executionName: string): void {
    this.executions.get(executionName)?.finish('failed', { code: 9, message: 'Task failed: the container was terminated (out of memory).' });
  }

  /** Resolves once `check` holds, re-checked whenever an execution is created, starts or completes. */
  waitFor<T>(check: (run: this) => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
    return waitUntil(
      () => check(this),
      (listener) => {
        this.events.on('change', listener);
        return () => this.events.off('change', listener);
      },
      timeoutMs,
      () => `runs: ${this.runs.map((run) => run.executionName).join(', ')}\nrunning: ${this.running().join(', ')}\n${this.lastRunnerOutput.slice(-4000)}`,
    );
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const path = decodeURIComponent(url.pathname);
    const body = await readBody(request);
    const reply = (status: number, value: unknown) => {
      this.requests.push({ method: request.method ?? '', path, status });
      sendJson(response, status, value);
    };
    const { project, region, job } = this.options;
    const location = `projects/${project}/locations/${region}`;
    const run = /^\/v2\/(projects\/[^/]+\/locations\/[^/]+\/jobs\/[^/:]+):run$/.exec(path);
    const operation = /^\/v2\/(projects\/[^/]+\/locations\/[^/]+\/operations\/[^/:]+)$/.exec(path);
    const execution = /^\/v2\/(projects\/[^/]+\/locations\/[^/]+\/jobs\/[^/]+\/executions\/[^/:]+)(:cancel)?$/.exec(path);
    const jobName = `${location}/jobs/${job}`;
    if (request.method === 'GET' && path === `/v2/${jobName}`) return reply(200, jobResource(jobName, this.jobSettings, this.jobCreated));
    if (request.method === 'POST' && path === `/v2/${jobName}:testIamPermissions`) {
      const asked = (JSON.parse(body.toString('utf8') || '{}') as { permissions?: string[] }).permissions ?? [];
      return reply(200, { permissions: asked.filter((permission) => this.jobSettings.permissions.includes(permission)) });
    }
    const jobPath = /^\/v2\/(projects\/[^/]+\/locations\/[^/]+\/jobs\/[^/:]+)(?::testIamPermissions)?$/.exec(path);
    if (jobPath) return reply(404, googleError(404, 'NOT_FOUND', `Resource '${jobPath[1]}' was not found`));
    if (request.method === 'POST' && run) {
      if (run[1] !== `${location}/jobs/${job}`) return reply(404, googleError(404, 'NOT_FOUND', `Resource '${run[1]}' was not found`));
      const started = this.startRun(JSON.parse(body.toString('utf8') || '{}') as RunJobBody);
      if (typeof started === 'string') return reply(400, googleError(400, 'INVALID_ARGUMENT', started));
      return reply(200, this.operation(started));
    }
    if (request.method === 'GET' && operation) {
      const found = [...this.executions.values()].find((candidate) => candidate.operationName === operation[1]);
      if (found === undefined) return reply(404, googleError(404, 'NOT_FOUND', `Operation ${operation[1]} not found`));
      return reply(200, this.operation(found));
    }
    const found = execution === null ? undefined : this.executions.get(execution[1]!);
    if (execution !== null && found === undefined) return reply(404, googleError(404, 'NOT_FOUND', `Execution ${execution[1]} not found`));
    if (request.method === 'GET' && execution !== null && execution[2] === undefined) return reply(200, executionResource(found!, this.jobSettings));
    if (request.method === 'POST' && execution?.[2] === ':cancel') {
      if (found!.done) {
        this.refusedCancels.push(found!.name);
        return reply(400, googleError(400, 'FAILED_PRECONDITION', `Execution ${found!.name} has already completed and cannot be cancelled.`));
      }
      this.cancelledExecutions.push(found!.name);
      found!.finish('cancelled');
      return reply(200, { name: `${location}/operations/${randomUUID()}`, metadata: executionResource(found!, this.jobSettings), done: false });
    }
    this.unexpected.push(`${request.method} ${url.pathname}${url.search}`);
    reply(501, googleError(501, 'UNIMPLEMENTED', `fake-cloud-run does not understand ${request.method} ${url.pathname}`));
  }

  private startRun(body: RunJobBody): Execution | string {
    const overrides = body.overrides ?? {};
    const env = Object.fromEntries((overrides.containerOverrides?.[0]?.env ?? []).map((entry) => [entry.name, entry.value ?? '']));
    const timeoutSec = Number(/^(\d+)s$/.exec(String(overrides.timeout ?? ''))?.[1] ?? NaN);
    const problem = overridesProblem(env, timeoutSec, this.options.expectedToken);
    if (problem !== undefined) {
      this.violations.push(problem);
      return problem;
    }
    const { project, region, job } = this.options;
    const execution: Execution = {
      name: `projects/${project}/locations/${region}/jobs/${job}/executions/${job}-${randomUUID().slice(0, 5)}`,
      env,
      timeoutSec,
      operationName: `projects/${project}/locations/${region}/operations/${randomUUID()}`,
      createdAt: new Date(),
      done: false,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
      finish: (outcome, error) => {
        if (execution.done) return;
        Object.assign(execution, { done: true, outcome, completedAt: new Date(), error });
        execution[outcome] = 1;
        clearTimeout(execution.starting);
        execution.container?.kill();
        this.events.emit('change');
      },
    };
    this.executions.set(execution.name, execution);
    this.runs.push({ executionName: execution.name, env, timeoutSec, taskCount: overrides.taskCount ?? 0 });
    this.events.emit('change');
    // fail, error and cancel: the task starts and ends at once.
    if (['fail', 'error', 'cancel'].includes(this.mode)) execution.startedAt = execution.createdAt;
    if (this.mode === 'fail') execution.finish('failed');
    else if (this.mode === 'cancel') execution.finish('cancelled');
    else if (this.mode === 'error') execution.finish('failed', { code: 9, message: `Task ${job}-task0 failed: the container exited with status 1` });
    else if (this.mode !== 'hang') execution.starting = setTimeout(() => this.startContainer(execution, env, timeoutSec), this.startDelayMs);
    return execution;
  }

  private startContainer(execution: Execution, env: Record<string, string>, timeoutSec: number): void {
    execution.startedAt = new Date();
    this.events.emit('change');
    // Cloud Run ends a task at its timeout, counted from the task's start; the execution fails.
    const timeout = setTimeout(() => execution.finish('failed'), timeoutSec * 1000);
    timeout.unref();
    if (this.mode === 'kill-at-timeout') return;
    this.lastRunnerOutput = '';
    execution.container = startContainer({
      executionName: execution.name,
      createdAt: execution.createdAt,
      gcs: this.options.gcs,
      gcsUrl: this.gcsUrl,
      env,
      python: this.options.python ?? '/usr/bin/python3',
      ...(this.options.sessionPreload === undefined ? {} : { sessionPreload: this.options.sessionPreload }),
      onOutput: (text) => (this.lastRunnerOutput = (this.lastRunnerOutput + text).slice(-20_000)),
      onViolation: (message) => this.violations.push(message),
    });
    execution.container.ended.then(
      (outcome) => {
        clearTimeout(timeout);
        if (outcome !== undefined) execution.finish(outcome);
      },
      (error: unknown) => {
        this.lastRunnerOutput += String(error);
        execution.finish('failed');
      },
    );
  }

  private operation(execution: Execution): Record<string, unknown> {
    const resource = executionResource(execution, this.jobSettings);
    const operation: Record<string, unknown> = { name: execution.operationName, metadata: resource, done: execution.done };
    if (execution.done && execution.error !== undefined) operation.error = execution.error;
    else if (execution.done) operation.response = resource;
    return operation;
  }
}

interface RunJobBody {
  overrides?: {
    containerOverrides?: { env?: { name: string; value?: string }[] }[];
    taskCount?: number;
    timeout?: string;
  };
}

/** Why the real deployment would not work with these overrides (isolation rules, session settings), if it would not. */
function overridesProblem(env: Record<string, string>, timeoutSec: number, expectedToken: string): string | undefined {
  const secretNames = Object.keys(env).filter((name) => /^(SLACK_|OPENAI_)/.test(name));
  if (secretNames.length > 0) return `secrets in the execution overrides: ${secretNames.join(', ')}`;
  if (env.OI_TOKEN !== expectedToken) return 'OI_TOKEN is not the minted token';
  const mode = env.OI_SESSION_ID === undefined ? ['OI_STEP_ID'] : SESSION_VARIABLES;
  for (const name of ['OI_BUCKET', 'OI_PREFIX', ...mode]) {
    if (!env[name]) return `${name} missing from the overrides`;
  }
  if (!Number.isFinite(timeoutSec)) return 'overrides.timeout missing';
  if (env.OI_SESSION_ID === undefined) return undefined;
  const endAt = Number(env.OI_SESSION_END_AT);
  if (endAt > Number(env.OI_TOKEN_EXPIRES_AT)) return 'OI_SESSION_END_AT is after the token expires';
  if (Date.now() / 1000 + timeoutSec < endAt) return 'the task timeout ends the session before OI_SESSION_END_AT';
  return undefined;
}

function googleError(code: number, status: string, message: string): unknown {
  return { error: { code, message, status } };
}
