import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lchown, lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultJobSettings, jobResource, taskTemplate, writeEntrypointTimings, type FakeJobSettings } from './cloud-run-job.js';
import type { FakeGcs } from './fake-gcs.js';
import { mountPrefix, syncBack } from './fake-gcsfuse.js';
import { closeServer, listenLocal, readBody, sendJson } from './http-helpers.js';

/**
 * Cloud Run Admin API v2 over REST, as @google-cloud/run's JobsClient / ExecutionsClient send it
 * with `fallback: true`: `POST /v2/projects/P/locations/R/jobs/J:run` returns a long-running
 * Operation whose metadata is the Execution, `GET /v2/projects/P/locations/R/operations/ID` polls it,
 * `POST /v2/<execution>:cancel` cancels (a finished execution is refused with 400 FAILED_PRECONDITION, as the real
 * API refuses a request the resource's state does not allow: https://cloud.google.com/apis/design/errors),
 * `GET /v2/<execution>` reads one back (its task template carries the run's env overrides), and the job answers
 * `GET` and `:testIamPermissions` (cloud-run-job.ts; a job of another name is 404 NOT_FOUND).
 * Executions report `createTime`, `startTime`, `completionTime` and `conditions` like the v2 Execution resource
 * (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions). In `normal` mode a run really executes: the thread's objects
 * (OI_PREFIX) are copied out of FakeGcs into a temporary directory, `runner.py --workspace DIR --step
 * OI_STEP_ID` runs there with a clean environment, and changes are copied back (see fake-gcsfuse.ts). Like the
 * real token, the run's OI_TOKEN then reaches only its OI_PREFIX in FakeGcs (gcs-access.ts); with OI_TIMINGS=1 the
 * entrypoint's timings file is written first.
 * Anything unexpected answers 501 and is recorded in `unexpected`; a run whose overrides break the
 * isolation rules (wrong token, a SLACK_/OPENAI_ variable) answers 400 and is recorded in `violations`.
 */

export type FakeRunMode = 'normal' | 'fail' | 'error' | 'cancel' | 'hang' | 'kill-at-timeout';

export interface RecordedRun {
  executionName: string;
  env: Record<string, string>;
  timeoutSec: number;
  taskCount: number;
}

interface Execution {
  name: string;
  env: Record<string, string>;
  timeoutSec: number;
  operationName: string;
  createdAt: Date;
  completedAt?: Date;
  outcome?: 'succeeded' | 'failed' | 'cancelled';
  done: boolean;
  succeeded: number;
  failed: number;
  cancelled: number;
  error?: { code: number; message: string };
  process?: ChildProcess;
  finish: (outcome: 'succeeded' | 'failed' | 'cancelled') => void;
}

const defaultRunner = fileURLToPath(new URL('../../sandbox-image/runner.py', import.meta.url));

export class FakeCloudRun {
  mode: FakeRunMode = 'normal';
  readonly requests: { method: string; path: string; status: number }[] = [];
  readonly unexpected: string[] = [];
  readonly violations: string[] = [];
  readonly runs: RecordedRun[] = [];
  readonly cancelledExecutions: string[] = [];
  /** Cancel requests refused because the execution had finished already. */
  readonly refusedCancels: string[] = [];
  /** Output of the last runner process, for debugging a failing test. */
  lastRunnerOutput = '';
  /** The job as `GET` and `:testIamPermissions` describe it. */
  readonly jobSettings: FakeJobSettings = defaultJobSettings();
  private readonly jobCreated = new Date();
  private readonly executions = new Map<string, Execution>();
  private server: Server | undefined;

  constructor(
    private readonly options: {
      gcs: FakeGcs;
      project: string;
      region: string;
      job: string;
      /** The token the controller minted; any other OI_TOKEN is a violation. */
      expectedToken: string;
      runnerPath?: string;
      python?: string;
    },
  ) {}

  async start(): Promise<{ url: string; port: number }> {
    const { server, port } = await listenLocal((request, response) => this.handle(request, response));
    this.server = server;
    return { url: `http://127.0.0.1:${port}`, port };
  }

  async close(): Promise<void> {
    for (const execution of this.executions.values()) execution.process?.kill('SIGKILL');
    if (this.server !== undefined) await closeServer(this.server);
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
    const cancel = /^\/v2\/(projects\/[^/]+\/locations\/[^/]+\/jobs\/[^/]+\/executions\/[^/:]+):cancel$/.exec(path);
    const jobName = `${location}/jobs/${job}`;
    if (request.method === 'GET' && path === `/v2/${jobName}`) return reply(200, jobResource(jobName, this.jobSettings, this.jobCreated));
    if (request.method === 'POST' && path === `/v2/${jobName}:testIamPermissions`) {
      const asked = (JSON.parse(body.toString('utf8') || '{}') as { permissions?: string[] }).permissions ?? [];
      return reply(200, { permissions: asked.filter((permission) => this.jobSettings.permissions.includes(permission)) });
    }
    const jobPath = /^\/v2\/(projects\/[^/]+\/locations\/[^/]+\/jobs\/[^/:]+)(?::testIamPermissions)?$/.exec(path);
    if (jobPath) return reply(404, googleError(404, 'NOT_FOUND', `Resource '${jobPath[1]}' was not found`));
    const execution = request.method === 'GET' ? this.executions.get(path.slice('/v2/'.length)) : undefined;
    if (execution !== undefined) return reply(200, executionResource(execution, this.jobSettings));
    if (request.method === 'POST' && run) {
      if (run[1] !== `${location}/jobs/${job}`) return reply(404, googleError(404, 'NOT_FOUND', `Resource '${run[1]}' was not found`));
      const started = this.startRun(JSON.parse(body.toString('utf8') || '{}') as RunJobBody);
      if (typeof started === 'string') return reply(400, googleError(400, 'INVALID_ARGUMENT', started));
      return reply(200, this.operation(started));
    }
    if (request.method === 'GET' && operation) {
      const execution = [...this.executions.values()].find((candidate) => candidate.operationName === operation[1]);
      if (execution === undefined) return reply(404, googleError(404, 'NOT_FOUND', `Operation ${operation[1]} not found`));
      return reply(200, this.operation(execution));
    }
    if (request.method === 'POST' && cancel) {
      const execution = this.executions.get(cancel[1]!);
      if (execution === undefined) return reply(404, googleError(404, 'NOT_FOUND', `Execution ${cancel[1]} not found`));
      if (execution.done) {
        this.refusedCancels.push(execution.name);
        return reply(400, googleError(400, 'FAILED_PRECONDITION', `Execution ${execution.name} has already completed and cannot be cancelled.`));
      }
      this.cancelledExecutions.push(execution.name);
      execution.finish('cancelled');
      return reply(200, { name: `${location}/operations/${randomUUID()}`, metadata: executionResource(execution, this.jobSettings), done: false });
    }
    this.unexpected.push(`${request.method} ${url.pathname}${url.search}`);
    reply(501, googleError(501, 'UNIMPLEMENTED', `fake-cloud-run does not understand ${request.method} ${url.pathname}`));
  }

  private startRun(body: RunJobBody): Execution | string {
    const overrides = body.overrides ?? {};
    const env = Object.fromEntries((overrides.containerOverrides?.[0]?.env ?? []).map((entry) => [entry.name, entry.value ?? '']));
    const secretNames = Object.keys(env).filter((name) => /^(SLACK_|OPENAI_)/.test(name));
    if (secretNames.length > 0) return this.violation(`secrets in the execution overrides: ${secretNames.join(', ')}`);
    if (env.OI_TOKEN !== this.options.expectedToken) return this.violation('OI_TOKEN is not the minted token');
    for (const name of ['OI_BUCKET', 'OI_PREFIX', 'OI_STEP_ID']) {
      if (!env[name]) return this.violation(`${name} missing from the overrides`);
    }
    const timeoutSec = Number(/^(\d+)s$/.exec(String(overrides.timeout ?? ''))?.[1] ?? NaN);
    if (!Number.isFinite(timeoutSec)) return this.violation('overrides.timeout missing');
    const { project, region, job } = this.options;
    const name = `projects/${project}/locations/${region}/jobs/${job}/executions/${job}-${randomUUID().slice(0, 5)}`;
    const execution: Execution = {
      name,
      env,
      timeoutSec,
      operationName: `projects/${project}/locations/${region}/operations/${randomUUID()}`,
      createdAt: new Date(),
      done: false,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
      finish: (outcome) => {
        if (execution.done) return;
        execution.done = true;
        execution.outcome = outcome;
        execution.completedAt = new Date();
        execution.process?.kill('SIGKILL');
        execution[outcome] = 1;
      },
    };
    this.executions.set(name, execution);
    this.runs.push({ executionName: name, env, timeoutSec, taskCount: overrides.taskCount ?? 0 });
    if (this.mode === 'normal') void this.execute(execution, env, timeoutSec);
    else if (this.mode === 'fail') execution.finish('failed');
    else if (this.mode === 'cancel') execution.finish('cancelled');
    else if (this.mode === 'error') {
      execution.finish('failed');
      execution.error = { code: 9, message: `Task ${job}-task0 failed: the container exited with status 1` };
    } else if (this.mode === 'kill-at-timeout') setTimeout(() => execution.finish('failed'), timeoutSec * 1000).unref();
    return execution;
  }

  private violation(message: string): string {
    this.violations.push(message);
    return message;
  }

  /** Mount, run runner.py with a clean environment (no secrets), sync back, complete the execution. */
  private async execute(execution: Execution, env: Record<string, string>, timeoutSec: number): Promise<void> {
    const bucket = env.OI_BUCKET!;
    const prefix = env.OI_PREFIX!;
    const dir = await mkdtemp(join(tmpdir(), 'fake-cloud-run-'));
    try {
      const snapshot = await mountPrefix(this.options.gcs, bucket, prefix, dir);
      this.options.gcs.access.bindToPrefix(env.OI_TOKEN!, prefix);
      if (env.OI_TIMINGS === '1') await writeEntrypointTimings(dir, env.OI_STEP_ID!, execution.createdAt.getTime());
      const runner = [this.options.python ?? '/usr/bin/python3', this.options.runnerPath ?? defaultRunner, '--workspace', dir, '--step', env.OI_STEP_ID!];
      const [command, args, identity] = await separateFromController(runner, dir);
      const child = spawn(command, args, {
        env: { PATH: '/usr/bin:/bin', HOME: dir, LANG: 'C.UTF-8' },
        stdio: ['ignore', 'pipe', 'pipe'],
        ...identity,
      });
      execution.process = child;
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const killer = setTimeout(() => child.kill('SIGKILL'), timeoutSec * 1000);
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      clearTimeout(killer);
      this.lastRunnerOutput = output;
      if (execution.done) return; // cancelled meanwhile: like gcsfuse after SIGKILL, nothing more is written
      await syncBack(this.options.gcs, bucket, prefix, dir, snapshot);
      execution.finish(code === 0 ? 'succeeded' : 'failed');
    } catch (error) {
      this.lastRunnerOutput = String(error);
      execution.finish('failed');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
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

/**
 * On Cloud Run the step runs in its own container, as an unprivileged user: it cannot see the
 * controller's processes. Here the runner shares the machine with the bot, so it runs as `nobody`
 * when we are root (the workspace copy is handed to that uid), else in a PID namespace (bubblewrap)
 * when available: either way the bot's /proc/<pid>/environ stays out of its reach.
 */
async function separateFromController(runner: string[], dir: string): Promise<[string, string[], { uid?: number; gid?: number }]> {
  if (process.getuid?.() === 0) {
    await chownTree(dir, NOBODY, NOBODY);
    return [runner[0]!, runner.slice(1), { uid: NOBODY, gid: NOBODY }];
  }
  if (existsSync('/usr/bin/bwrap')) {
    return ['/usr/bin/bwrap', ['--dev-bind', '/', '/', '--unshare-pid', '--proc', '/proc', '--die-with-parent', ...runner], {}];
  }
  return [runner[0]!, runner.slice(1), {}];
}

const NOBODY = 65534;

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await lchown(path, uid, gid);
  const info = await lstat(path);
  if (!info.isDirectory()) return;
  for (const child of await readdir(path)) await chownTree(join(path, child), uid, gid);
}

function executionResource(execution: Execution, job: FakeJobSettings): Record<string, unknown> {
  const created = execution.createdAt.toISOString();
  const completed = execution.completedAt?.toISOString();
  return {
    '@type': 'type.googleapis.com/google.cloud.run.v2.Execution',
    name: execution.name,
    uid: execution.operationName.split('/').at(-1),
    generation: '1',
    createTime: created,
    startTime: created, // the fake starts the task at once
    ...(completed === undefined ? {} : { completionTime: completed }),
    updateTime: completed ?? created,
    job: execution.name.split('/')[5],
    parallelism: 1,
    taskCount: 1,
    reconciling: !execution.done,
    template: taskTemplate(job, Object.entries(execution.env).map(([name, value]) => ({ name, value })), execution.timeoutSec),
    conditions: executionConditions(execution, created, completed),
    observedGeneration: '1',
    runningCount: execution.done ? 0 : 1,
    succeededCount: execution.succeeded,
    failedCount: execution.failed,
    cancelledCount: execution.cancelled,
  };
}

/** `Completed` says how it ended (pending while it runs); resources were available and the task started at once. */
function executionConditions(execution: Execution, created: string, completed: string | undefined): Record<string, unknown>[] {
  const completion: Record<string, unknown> = { type: 'Completed', state: 'CONDITION_PENDING', lastTransitionTime: created };
  if (execution.outcome === 'succeeded') {
    Object.assign(completion, { state: 'CONDITION_SUCCEEDED', message: 'Execution completed successfully.', lastTransitionTime: completed });
  } else if (execution.outcome === 'failed') {
    const message = execution.error?.message ?? 'Task failed: the container exited with a non-zero status.';
    Object.assign(completion, { state: 'CONDITION_FAILED', message, executionReason: 'NON_ZERO_EXIT_CODE', lastTransitionTime: completed });
  } else if (execution.outcome === 'cancelled') {
    Object.assign(completion, { state: 'CONDITION_FAILED', message: 'The execution was cancelled.', executionReason: 'CANCELLED', lastTransitionTime: completed });
  }
  return [
    { type: 'ResourcesAvailable', state: 'CONDITION_SUCCEEDED', lastTransitionTime: created },
    { type: 'Started', state: 'CONDITION_SUCCEEDED', lastTransitionTime: created },
    completion,
  ];
}

function googleError(code: number, status: string, message: string): unknown {
  return { error: { code, message, status } };
}
