import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { v2 } from '@google-cloud/run';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { EMULATOR_SANDBOX_TOKEN, createGcpClients } from '../controller/gcp/gcp-clients.js';
import { loadBackendConfig } from '../controller/config.js';
import { silentLogger } from '../controller/logger.js';
import { ExecutionWatch } from '../controller/smoke/execution-watch.js';
import { formatSmokeReport, smokeExitCode, type SmokeReport } from '../controller/smoke/smoke-report.js';
import { IMPORT_NAMES } from '../controller/smoke/smoke-step.js';
import { runSmoke } from '../controller/smoke/smoke.js';
import { FakeMetadataServer } from './fakes/fake-metadata.js';
import { PROJECT_ROOT } from './helpers/bot-process.js';
import { startGcpFakes } from './helpers/gcp-fakes.js';

/**
 * The post-deploy check (`npm run smoke`, controller/smoke/) against the fakes: the step really runs (runner.py
 * under FakeCloudRun), FakeGcs holds the step's token to its prefix and the metadata server's account to no role
 * (test/fakes/gcs-access.ts), so the isolation checks meet a boundary that can hold or leak.
 */

const SANDBOX_ACCOUNT = 'oi-sandbox@test-project.iam.gserviceaccount.com';
const METADATA_TOKEN = 'metadata-server-token-of-the-sandbox-account';
let gcp: Awaited<ReturnType<typeof startGcpFakes>>;
let metadata: FakeMetadataServer;
let metadataHost: string;

beforeAll(async () => {
  gcp = await startGcpFakes();
  metadata = new FakeMetadataServer({ email: SANDBOX_ACCOUNT, token: METADATA_TOKEN });
  metadataHost = await metadata.start();
});
afterAll(async () => {
  await metadata.close();
  await gcp.close();
  expect(metadata.unexpected).toStrictEqual([]);
});

/** One smoke run in process, as smoke-cli.ts composes it. */
async function smoke(options: { libraries?: Record<string, string>; metadataHost?: string; refuseRunJob?: Error; session?: 'on' | 'off' } = {}): Promise<SmokeReport> {
  const config = loadBackendConfig({ ...gcp.env, STEP_TIMEOUT_SEC: '60', SANDBOX_SESSION: options.session ?? 'on' });
  let watch: ExecutionWatch | undefined;
  const refusing = (jobs: v2.JobsClient) =>
    options.refuseRunJob === undefined
      ? jobs
      : new Proxy(jobs, { get: (target, property, receiver) => (property === 'runJob' ? () => Promise.reject(options.refuseRunJob) : Reflect.get(target, property, receiver)) });
  const clients = createGcpClients(config, silentLogger, { instrumentJobs: (jobs, executions) => (watch = new ExecutionWatch(executions, 50)).wrap(refusing(jobs)) });
  try {
    return await runSmoke({
      clients,
      watch: watch!,
      libraries: options.libraries ?? { dill: '0.3.6', numpy: '1.24.2' },
      storageUrl: gcp.env.GCS_API_ENDPOINT!,
      metadataHost: 'metadataHost' in options ? options.metadataHost : metadataHost,
      stepTimeoutSec: 60,
    });
  } finally {
    await clients.sandbox.close();
  }
}

const outcomes = (report: SmokeReport) => Object.fromEntries(report.checks.map((check) => [check.name, check.outcome]));
const leftovers = () => gcp.gcs.names('oi-e2e').filter((name) => name.includes('/smoke/'));

describe('against the fakes', () => {
  afterEach(() => {
    expect(leftovers(), 'the scratch threads are removed').toStrictEqual([]);
  });

  // With sessions (the default) the check also runs a second step in the session's execution and ends the session.
  const sessionStages = { on: ['warm step', 'session ended'], off: [] };
  const sessionChecks = { on: ["a second step runs in the session's execution", 'the session ends when asked'], off: [] };

  test.each(['off', 'on'] as const)('a healthy deployment (SANDBOX_SESSION=%s): every stage timed, every check passes, nothing left behind', async (session) => {
    gcp.gcs.access.declareWithoutRoles(METADATA_TOKEN);
    const report = await smoke({ session });
    expect(report.checks.filter((check) => check.outcome !== 'pass'), formatSmokeReport(report).join('\n')).toStrictEqual([]);
    expect(smokeExitCode(report)).toBe(0);
    expect(report.stages.map((stage) => stage.name)).toStrictEqual(['runJob accepted', 'execution started', 'prefix mounted', 'libraries imported', 'result read', ...sessionStages[session]]);
    for (const stage of report.stages) expect(stage.atMs, stage.name).toBeTypeOf('number');
    expect(gcp.run.running(), 'nothing is left running').toStrictEqual([]);
    expect(Object.keys(outcomes(report))).toStrictEqual([
      'start-up checks (credentials, bucket, token chain, job)',
      'one step runs through the job',
      'every library the model is told about imports',
      "no Slack or OpenAI secret in the step's environment",
      "the metadata server's account has no roles on the bucket",
      "no Slack or OpenAI secret in the execution's environment (as Cloud Run reports it)",
      "the step's token lists its own thread's prefix",
      "the step's token cannot list another thread's prefix",
      "the step's token cannot read another thread's file",
      "the step's token cannot list the conversation histories (threads/)",
      "the step's token cannot list the whole bucket",
      ...sessionChecks[session],
    ]);
    const run = gcp.run.runs.at(-1)!;
    expect(run.env.OI_TIMINGS, 'the entrypoint was asked for its timings').toBe('1');
    expect(run.env.OI_PREFIX).toBe(`workspaces/smoke/${report.runId}/main/`);
    expect(gcp.gcs.access.refused, 'the refusals came from the boundary').toEqual(
      expect.arrayContaining([`storage.objects.list on oi-e2e`, `storage.objects.get on oi-e2e/workspaces/smoke/${report.runId}/canary/canary.txt`]),
    );
    expect(report.checks.find((check) => check.name.includes('token lists its own'))?.detail).toMatch(/read back from the execution/);
    const text = formatSmokeReport(report).join('\n');
    expect(text).toMatch(/^prefix mounted +\+\d+\.\d\ds +\d+\.\d\ds +container start → mounted/m);
    expect(text).toMatch(new RegExp(`^${11 + sessionChecks[session].length} passed, 0 failed, 0 skipped$`, 'm'));
  });

  test('each broken promise fails its check and the exit code, and the scratch threads are still removed', async () => {
    // A leaky access boundary (the token reaches every workspace), a metadata account with roles, a missing library.
    const bind = gcp.gcs.access.bindToPrefix.bind(gcp.gcs.access);
    gcp.gcs.access.bindToPrefix = (token) => bind(token, 'workspaces/');
    const rolefulMetadata = new FakeMetadataServer({ email: SANDBOX_ACCOUNT, token: 'a-token-with-roles' });
    const host = await rolefulMetadata.start();
    try {
      const report = await smoke({ libraries: { dill: '', 'no-such-library-oi': '1.0' }, metadataHost: host });
      expect(smokeExitCode(report)).toBe(1);
      const failed = report.checks.filter((check) => check.outcome === 'fail');
      expect(failed.map((check) => check.name), formatSmokeReport(report).join('\n')).toStrictEqual([
        'every library the model is told about imports',
        "the metadata server's account has no roles on the bucket",
        "the step's token cannot list another thread's prefix",
        "the step's token cannot read another thread's file",
      ]);
      expect(failed[0]!.detail).toMatch(/^no-such-library-oi \(ModuleNotFoundError: /);
      expect(failed[1]!.detail).toMatch(/^oi-sandbox@test-project\.iam\.gserviceaccount\.com holds storage\.objects\.list, /);
      expect(failed[2]!.detail).toMatch(/^HTTP 200, expected 403/);
    } finally {
      gcp.gcs.access.bindToPrefix = bind;
      await rolefulMetadata.close();
    }
  });

  test('a runJob Google refuses (actAs) shows as the refused stage and a failed check; the canary is still removed', async () => {
    const actAs = Object.assign(new Error("7 PERMISSION_DENIED: Permission 'iam.serviceaccounts.actAs' denied on service account oi-sandbox@test-project.iam.gserviceaccount.com"), { code: 7 });
    const report = await smoke({ refuseRunJob: actAs });
    expect(smokeExitCode(report)).toBe(1);
    expect(report.stages).toStrictEqual([{ name: 'runJob accepted', detail: expect.stringMatching(/^refused: 7 PERMISSION_DENIED: Permission 'iam\.serviceaccounts\.actAs' denied/) }]);
    expect(report.checks.at(-1)).toMatchObject({ name: 'one step runs through the job', outcome: 'fail', detail: expect.stringMatching(/could not start Cloud Run job oi-sandbox/) });
    expect(report.cleanup).toMatch(/^removed 1 objects under /);
  });

  test('a secret in the job stops the check before anything is created; without a metadata server that check is skipped', async () => {
    gcp.run.jobSettings.env.push({ name: 'OPENAI_API_KEY', value: 'sk-oops' });
    const runsBefore = gcp.run.runs.length;
    try {
      const report = await smoke();
      expect(report.checks).toHaveLength(1);
      expect(report.checks[0]).toMatchObject({ outcome: 'fail', detail: expect.stringMatching(/carries OPENAI_API_KEY/) });
      expect(gcp.run.runs.length, 'no execution was started').toBe(runsBefore);
    } finally {
      gcp.run.jobSettings.env.length = 0;
    }
    gcp.gcs.access.declareWithoutRoles(METADATA_TOKEN);
    const report = await smoke({ metadataHost: undefined });
    expect(outcomes(report)["the metadata server's account has no roles on the bucket"]).toBe('skip');
    expect(smokeExitCode(report), 'a skip is not a failure').toBe(0);
  });
});

test('the step imports each library under the module name record_libraries.py uses', () => {
  const script = readFileSync(new URL('../sandbox-image/record_libraries.py', import.meta.url), 'utf8');
  const table = /IMPORT_NAMES = \{([^}]*)\}/.exec(script)![1]!;
  const entries = [...table.matchAll(/'([^']+)': \[([^\]]*)\]/g)].map(([, name, modules]) => [name, [...modules!.matchAll(/'([^']+)'/g)].map((match) => match[1])]);
  expect(Object.fromEntries(entries)).toStrictEqual(IMPORT_NAMES);
});

describe('npm run smoke (the command)', () => {
  const runCli = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'controller/smoke/smoke-cli.ts', ...args], {
        cwd: PROJECT_ROOT,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', METADATA_SERVER_DETECTION: 'none', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('exit', (code) => resolve({ code, stdout, stderr }));
    });

  test('refuses emulator endpoints unless --allow-emulator, and any endpoint that is not on 127.0.0.1', { timeout: 60_000 }, async () => {
    const requestsBefore = gcp.run.requests.length + gcp.gcs.requests.length;
    const refused = await runCli([], gcp.env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe('smoke: GCS_API_ENDPOINT, CLOUD_RUN_API_ENDPOINT point at an emulator: the post-deploy check runs against a real project (--allow-emulator is for its own tests)\n');
    const remote = await runCli(['--allow-emulator'], { ...gcp.env, GCS_API_ENDPOINT: 'https://storage.example.com' });
    expect(remote.code).toBe(2);
    expect(remote.stderr).toMatch(/^smoke: GCS_API_ENDPOINT is https:\/\/storage\.example\.com: an emulator must be on 127\.0\.0\.1/);
    expect(gcp.run.requests.length + gcp.gcs.requests.length, 'nothing was sent').toBe(requestsBefore);
  });

  test('with --allow-emulator it runs against the fakes with no Slack or OpenAI setting, prints its report and exits 0', { timeout: 60_000 }, async () => {
    gcp.gcs.access.declareWithoutRoles(METADATA_TOKEN);
    const { code, stdout, stderr } = await runCli(['--allow-emulator'], { ...gcp.env, GCE_METADATA_HOST: metadataHost, STEP_TIMEOUT_SEC: '60' });
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout).toMatch(/^runJob accepted +\+\d+\.\d\ds/m);
    expect(stdout).toMatch(/^result read +\+\d+\.\d\ds/m);
    expect(stdout).toMatch(/^PASS  the step's token cannot read another thread's file: HTTP 403/m);
    expect(stdout).toMatch(/^\d+ passed, 0 failed, 0 skipped$/m);
    expect(stdout, 'the static emulator token is never printed').not.toContain(EMULATOR_SANDBOX_TOKEN);
    expect(leftovers()).toStrictEqual([]);
  });
});
