import { PassThroughClient } from 'google-auth-library';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { cloudRunClientOptions, createGcpClients, EMULATOR_SANDBOX_TOKEN } from '../controller/gcp/gcp-clients.js';
import { retryTransient } from '../controller/gcp/google-errors.js';
import { checkGoogleCloud } from '../controller/gcp/startup-checks.js';
import { loadConfig } from '../controller/config.js';
import { silentLogger } from '../controller/logger.js';
import { SandboxError } from '../controller/sandbox/sandbox.js';
import { startGcpFakes } from './helpers/gcp-fakes.js';

/**
 * The Cloud Run backend's start-up checks (controller/gcp/startup-checks.ts) with the real client libraries against
 * the fakes, and the one transport both production and the tests use. (The process-level cases, no credentials and
 * a job that does not exist, are in startup.test.ts.)
 */

let gcp: Awaited<ReturnType<typeof startGcpFakes>>;
beforeAll(async () => {
  gcp = await startGcpFakes();
});
afterAll(async () => gcp.close());

const clientsFor = (env: Record<string, string> = {}) =>
  createGcpClients(loadConfig({ SLACK_BOT_TOKEN: 'xoxb-1', OPENAI_API_KEY: 'sk-1', SLACK_SIGNING_SECRET: 's', ...gcp.env, ...env }), silentLogger);

test('production and the tests reach Cloud Run the same way: REST (fallback); only the endpoint and the credentials differ', () => {
  const production = cloudRunClientOptions('my-project', undefined);
  expect(production, 'production: run.googleapis.com, Application Default Credentials').toStrictEqual({ projectId: 'my-project', fallback: true });
  const emulator = cloudRunClientOptions('my-project', 'http://127.0.0.1:8123') as Record<string, unknown>;
  expect(emulator.authClient).toBeInstanceOf(PassThroughClient);
  const { authClient: _authClient, ...rest } = emulator;
  expect(rest).toStrictEqual({ ...production, apiEndpoint: '127.0.0.1', port: 8123, protocol: 'http' });
});

test('a job deployed by digest, with the permissions and a clean environment, passes without a word', async () => {
  const clients = clientsFor();
  try {
    expect(await checkGoogleCloud(clients.checkTargets, clients)).toStrictEqual({ problems: [], warnings: [] });
    expect(clients.checkTargets.usesCredentials, 'emulators: no credentials are looked for').toBe(false);
  } finally {
    await clients.sandbox.close();
  }
});

test('a job run by tag is a warning; a secret in the job\'s own environment stops the bot', async () => {
  const saved = { ...gcp.run.jobSettings, env: [...gcp.run.jobSettings.env] };
  gcp.run.jobSettings.image = 'us-central1-docker.pkg.dev/test-project/oi/sandbox:latest';
  gcp.run.jobSettings.env.push({ name: 'SLACK_BOT_TOKEN', value: 'xoxb-leaked' }, { name: 'HELPER', value: 'sk-also-a-secret' }, { name: 'LANG', value: 'C' });
  const clients = clientsFor();
  try {
    const findings = await checkGoogleCloud(clients.checkTargets, clients);
    expect(findings.problems).toStrictEqual([
      "Configuration error: SANDBOX_JOB: the sandbox job's own environment carries SLACK_BOT_TOKEN, HELPER: remove them (gcloud run jobs update --remove-env-vars); the sandbox must never see a Slack or OpenAI secret",
    ]);
    expect(findings.problems.join('\n'), 'values are never repeated').not.toMatch(/xoxb-leaked|sk-also/);
    expect(findings.warnings).toHaveLength(1);
    expect(findings.warnings[0]).toMatch(/^Cloud Run job oi-sandbox runs its image by tag \(us-central1-docker\.pkg\.dev\/test-project\/oi\/sandbox:latest\): .*deploy it by digest/);
  } finally {
    Object.assign(gcp.run.jobSettings, saved);
    await clients.sandbox.close();
  }
});

test("a missing run.executions.* permission is a warning (Google may not count it on the job), a missing run.jobs.* one a problem", async () => {
  const saved = [...gcp.run.jobSettings.permissions];
  gcp.run.jobSettings.permissions.splice(0, Infinity, 'run.jobs.get', 'run.jobs.run', 'run.jobs.runWithOverrides', 'run.executions.get');
  const clients = clientsFor();
  try {
    expect(await checkGoogleCloud(clients.checkTargets, clients)).toStrictEqual({
      problems: [],
      warnings: ["the controller's service account lacks run.executions.cancel on Cloud Run job oi-sandbox: bind the oiSandboxRunner role on the job (docs/deploy.md, steps 2 and 6)"],
    });
    gcp.run.jobSettings.permissions.splice(0, Infinity, 'run.jobs.get');
    const findings = await checkGoogleCloud(clients.checkTargets, clients);
    expect(findings.problems).toStrictEqual([
      "Configuration error: SANDBOX_JOB: the controller's service account lacks run.jobs.run, run.jobs.runWithOverrides on Cloud Run job oi-sandbox: bind the oiSandboxRunner role on the job (docs/deploy.md, steps 2 and 6)",
    ]);
    expect(findings.warnings).toHaveLength(1);
  } finally {
    gcp.run.jobSettings.permissions.splice(0, Infinity, ...saved);
    await clients.sandbox.close();
  }
});

test('a token chain that fails (iamcredentials or STS refused) names the APIs and the role', async () => {
  const clients = clientsFor();
  const refusing = {
    mint: async () => {
      throw new SandboxError('start_failed', 'could not mint a downscoped storage token for the sandbox', {
        cause: Object.assign(new Error('Permission iam.serviceAccounts.getAccessToken denied on resource (or it may not exist).'), { code: 403 }),
      });
    },
  };
  try {
    const findings = await checkGoogleCloud(clients.checkTargets, { ...clients, tokenMinter: refusing });
    expect(findings.problems).toHaveLength(1);
    expect(findings.problems[0]).toMatch(
      /^Configuration error: cannot mint the sandbox's downscoped storage token \(could not mint .*: Permission iam\.serviceAccounts\.getAccessToken denied .*\): enable iam, iamcredentials and sts\.googleapis\.com .* roles\/iam\.serviceAccountTokenCreator on itself/,
    );
  } finally {
    await clients.sandbox.close();
  }
});

test('the start-up token is minted for a prefix no thread can have, valid as long as a step (or a session) needs', async () => {
  const sessions = clientsFor({ STEP_TIMEOUT_SEC: '600' });
  expect(sessions.checkTargets.tokenValidForSec, 'a Cloud Run session lives as long as its token: about 50 minutes').toBe(3000);
  await sessions.sandbox.close();
  const clients = clientsFor({ STEP_TIMEOUT_SEC: '600', SANDBOX_SESSION: 'off' });
  try {
    expect(clients.checkTargets.tokenValidForSec).toBe(600 + 120 + 60);
    const minted: string[] = [];
    await checkGoogleCloud(clients.checkTargets, { ...clients, tokenMinter: { mint: async (prefix) => (minted.push(prefix), { token: EMULATOR_SANDBOX_TOKEN, expiresAt: 0 }) } });
    expect(minted).toStrictEqual(['workspaces/startup-check/controller/0/']);
  } finally {
    await clients.sandbox.close();
  }
});

test('reads that meet UNAVAILABLE are tried again; a refusal is not', async () => {
  let calls = 0;
  const flaky = async () => {
    calls += 1;
    if (calls < 3) throw Object.assign(new Error('14 UNAVAILABLE: connection reset'), { code: 14 });
    return 'answer';
  };
  expect(await retryTransient(flaky, { firstDelayMs: 1 })).toBe('answer');
  expect(calls).toBe(3);
  let refusals = 0;
  const refused = retryTransient(
    async () => {
      refusals += 1;
      throw Object.assign(new Error('7 PERMISSION_DENIED'), { code: 7 });
    },
    { firstDelayMs: 1 },
  );
  await expect(refused).rejects.toMatchObject({ code: 7 });
  expect(refusals).toBe(1);
});
