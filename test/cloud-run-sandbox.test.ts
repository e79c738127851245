import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGcpClients, EMULATOR_SANDBOX_TOKEN, type GcpClients } from '../controller/gcp/gcp-clients.js';
import { silentLogger } from '../controller/logger.js';
import { CloudRunSandbox } from '../controller/sandbox/cloud-run/cloud-run-sandbox.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { FakeCloudRun } from './fakes/fake-cloud-run.js';
import { FakeGcs } from './fakes/fake-gcs.js';
import { BUCKET, fakeCloudConfig, JOB, PROJECT, REGION } from './helpers/cloud-run-session-fakes.js';
import { isSandboxError } from './helpers/sandbox-errors.js';
import { readAll } from './helpers/workspace-contract.js';

// The real @google-cloud/run client (fallback REST, built by createGcpClients from Config) against a
// Cloud Run Admin fake that really runs sandbox-image/runner.py over the thread's objects in fake GCS.

const thread = { team: 'T1', channel: 'C1', threadTs: '1700000000.000100' };

describe('CloudRunSandbox against fake Cloud Run and fake GCS', () => {
  const gcs = new FakeGcs([BUCKET]);
  const run = new FakeCloudRun({ gcs, project: PROJECT, region: REGION, job: JOB, expectedToken: EMULATOR_SANDBOX_TOKEN });
  let clients: GcpClients;

  beforeAll(async () => {
    const [{ url: gcsUrl }, { url: runUrl }] = await Promise.all([gcs.start(), run.start()]);
    clients = createGcpClients(fakeCloudConfig(gcsUrl, runUrl), silentLogger);
  });
  afterAll(async () => {
    await clients.sandbox.close();
    await Promise.all([gcs.close(), run.close()]);
    expect(gcs.unexpected).toStrictEqual([]);
  });
  beforeEach(() => {
    run.mode = 'normal';
    gcs.bucket(BUCKET).clear();
    expect(run.unexpected).toStrictEqual([]);
    expect(run.violations).toStrictEqual([]);
  });

  /** A sandbox on the same clients with a task timeout equal to the step timeout (no start-up margin). */
  function sandboxWithoutMargin(): CloudRunSandbox {
    return new CloudRunSandbox({ ...sandboxOptions(clients), startupMarginSec: 0 });
  }

  it('runs a step in the thread’s prefix: output, changed files and Python state come back', async () => {
    const workspace = clients.store.open(thread);
    await workspace.write('data.csv', 'a,b\n1,2\n3,4\n');
    const first = await clients.sandbox.run(workspace, {
      language: 'python',
      code: "import os\nrows = open('data.csv').read().splitlines()\nprint('rows', len(rows))\nos.makedirs('out', exist_ok=True)\nwith open('out/summary.txt', 'w') as handle:\n    handle.write('total 2')\n",
      timeoutSec: 60,
    });
    expect(first.error, run.lastRunnerOutput).toBeNull();
    expect(first.stdout).toBe('rows 3\n');
    expect(first.exitCode).toBe(0);
    expect(first.files).toContainEqual(expect.objectContaining({ path: 'out/summary.txt', change: 'created' }));
    expect(await readAll(await workspace.read('out/summary.txt'))).toBe('total 2');
    expect((await workspace.list()).map((entry) => entry.path)).toStrictEqual(['data.csv', 'out/summary.txt']);

    const [recorded] = run.runs;
    expect(run.runs).toHaveLength(1);
    expect(Object.keys(recorded!.env).sort()).toStrictEqual(['OI_BUCKET', 'OI_PREFIX', 'OI_STEP_ID', 'OI_TOKEN', 'OI_TOKEN_EXPIRES_AT']);
    expect(recorded!.env.OI_BUCKET).toBe(BUCKET);
    expect(recorded!.env.OI_PREFIX).toBe('workspaces/T1/C1/1700000000.000100/');
    expect(recorded!.env.OI_STEP_ID).toBe(first.stepId);
    expect(recorded!.env.OI_TOKEN).toBe(EMULATOR_SANDBOX_TOKEN);
    expect(recorded!.timeoutSec).toBe(60 + 120);
    expect(recorded!.taskCount).toBe(1);
    const leftovers = (await workspace.list({ includeInternal: true })).filter((entry) => entry.path.startsWith('.oi/steps/'));
    expect(leftovers, 'the step request/result objects are removed once read').toStrictEqual([]);

    const second = await clients.sandbox.run(workspace, { language: 'python', code: 'print(len(rows) * 10)\nraise ValueError("bad value")', timeoutSec: 60 });
    expect(second.stdout, 'variables survive between executions through the prefix').toBe('30\n');
    expect(second.error?.name, 'a failure of the user’s code is data, not an exception').toBe('ValueError');
    expect(second.stepId).not.toBe(first.stepId);
  });

  it('reports a step the runner stopped at its timeout as a timeout result; what it made before survives', async () => {
    const workspace = clients.store.open(thread);
    const result = await clients.sandbox.run(workspace, { language: 'python', code: 'made_before = 7\nimport time\ntime.sleep(30)', timeoutSec: 1 });
    expect(result.limit).toBe('timeout');
    expect(result.error?.value ?? '').toMatch(/STEP_TIMEOUT_SEC/);
    const next = await clients.sandbox.run(workspace, { language: 'python', code: 'print(made_before * 6)', timeoutSec: 60 });
    expect(next.stdout, run.lastRunnerOutput).toBe('42\n');
  });

  it('turns an execution killed at the task timeout into a timeout result', async () => {
    run.mode = 'kill-at-timeout';
    const result = await sandboxWithoutMargin().run(clients.store.open(thread), { language: 'python', code: 'while True: pass', timeoutSec: 1 });
    expect(result.limit).toBe('timeout');
    expect(result.error?.value).toBe('The step was stopped after 1 s (STEP_TIMEOUT_SEC).');
    expect(run.runs.at(-1)?.timeoutSec).toBe(1);
  });

  it('turns a failed execution into a clear SandboxError', async () => {
    run.mode = 'fail';
    const step = () => clients.sandbox.run(clients.store.open(thread), { language: 'python', code: 'print(1)', timeoutSec: 60 });
    await expect(step()).rejects.toSatisfy(isSandboxError('runner_failed', /execution .*oi-sandbox-.* failed: 1 task\(s\) failed/));
    run.mode = 'error';
    await expect(step()).rejects.toSatisfy(isSandboxError('runner_failed', /container exited with status 1/));
  });

  it('never reports a cancelled execution as a success', async () => {
    run.mode = 'cancel';
    await expect(clients.sandbox.run(clients.store.open(thread), { language: 'python', code: 'print(1)', timeoutSec: 60 })).rejects.toSatisfy(isSandboxError('cancelled'));
    expect(run.cancelledExecutions, 'cancelled by someone else, not by the controller').toStrictEqual([]);
  });

  it('cancels the execution when the step is aborted', async () => {
    run.mode = 'hang';
    const controller = new AbortController();
    const requestsBefore = run.requests.length;
    const running = clients.sandbox.run(clients.store.open(thread), { language: 'python', code: 'print(1)', timeoutSec: 60 }, { signal: controller.signal });
    // Abort once the controller is polling the execution's operation (it has the execution's name).
    while (!run.requests.slice(requestsBefore).some((request) => request.method === 'GET' && request.path.includes('/operations/'))) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const executionName = run.runs.at(-1)!.executionName;
    controller.abort();
    await expect(running).rejects.toSatisfy(isSandboxError('cancelled'));
    expect(run.cancelledExecutions).toContain(executionName);
  });

  it('refuses to start when already aborted, with a missing job, or with a local workspace', async () => {
    const before = run.runs.length;
    const controller = new AbortController();
    controller.abort();
    await expect(clients.sandbox.run(clients.store.open(thread), { language: 'python', code: 'print(1)', timeoutSec: 60 }, { signal: controller.signal })).rejects.toSatisfy(isSandboxError('cancelled'));
    expect(run.runs, 'no execution started').toHaveLength(before);
    const wrongJob = new CloudRunSandbox({ ...sandboxOptions(clients), job: 'no-such-job' });
    await expect(wrongJob.run(clients.store.open(thread), { language: 'python', code: 'print(1)', timeoutSec: 60 })).rejects.toSatisfy(isSandboxError('start_failed'));
    const local = new LocalWorkspaceStore(await mkdtemp(join(tmpdir(), 'oi-cr-'))).open(thread);
    await expect(clients.sandbox.run(local, { language: 'python', code: 'print(1)', timeoutSec: 60 })).rejects.toSatisfy(isSandboxError('unsupported_workspace'));
  });
});

function sandboxOptions(clients: GcpClients) {
  return {
    jobsClient: clients.jobsClient,
    executionsClient: clients.executionsClient,
    project: PROJECT,
    region: REGION,
    job: JOB,
    tokenMinter: clients.tokenMinter,
    limits: { memoryMb: 1024, cpuSec: 60, maxProcesses: 64, maxFileMb: 64 },
    logger: silentLogger,
    polling: { initialMs: 50, maxMs: 200 },
  };
}
