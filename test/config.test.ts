import { assert, expect, test } from 'vitest';
import { loadConfig } from '../controller/config.js';
import { ConfigError } from '../controller/errors.js';
import { runBotToExit } from './helpers/bot-process.js';

const minimal = { SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 'secret', OPENAI_API_KEY: 'sk-1' };

function errorFor(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    assert(error instanceof ConfigError);
    return error.message;
  }
  expect.unreachable('expected a configuration error');
}

test('embedded defaults need only the Slack and OpenAI secrets', () => {
  const config = loadConfig(minimal);
  expect(config.storage.backend).toBe('local');
  expect(config.sandbox.backend).toBe('local');
  expect(config.slack.port).toBe(3000);
  expect(config.limits.maxConcurrentTurns).toBe(8);
  expect(config.access.allowedChannels).toStrictEqual([]);
  expect(config.budgets.usageFooter).toBe(false);
  expect(config.sandbox).toMatchObject({ backend: 'local', network: 'egress', isolation: 'required', session: true, sessionIdleSec: 600, maxSessions: 16 });
  expect(config.limits.workspaceMaxMb).toBe(2048);
  expect(config.notices).toStrictEqual([]);
  expect(config.slack.streaming).toBe('auto');
});

test('isolation and network fail closed; their old values are read with a notice (issue 14)', () => {
  const local = (env: Record<string, string>) => {
    const config = loadConfig({ ...minimal, ...env });
    assert(config.sandbox.backend === 'local');
    return { network: config.sandbox.network, isolation: config.sandbox.isolation, notices: config.notices };
  };
  expect(local({ SANDBOX_ISOLATION: 'off' })).toMatchObject({ isolation: 'off', notices: [] });
  expect(local({ SANDBOX_ISOLATION: 'auto' }).isolation).toBe('required');
  expect(local({ SANDBOX_ISOLATION: 'auto' }).notices[0]).toMatch(/SANDBOX_ISOLATION=auto is deprecated and now means required/);
  expect(local({ SANDBOX_NETWORK: 'true' })).toMatchObject({ network: 'egress', notices: [expect.stringMatching(/never the host's network/)] });
  expect(local({ SANDBOX_NETWORK: 'false' })).toMatchObject({ network: 'off', notices: [expect.stringMatching(/SANDBOX_NETWORK=false is deprecated/)] });
  expect(local({ SANDBOX_NETWORK: 'off', SANDBOX_SESSION: 'off', SANDBOX_MAX_SESSIONS: '4' })).toMatchObject({ network: 'off', notices: [] });
  expect(errorFor({ ...minimal, SANDBOX_ISOLATION: 'maybe' })).toMatch(/SANDBOX_ISOLATION is invalid: must be required or off/);
});

test('the thread lease and the sweep: defaults that tell a dead instance\'s thread within 30 s, bounds named', () => {
  const { coordination } = loadConfig(minimal);
  expect(coordination).toStrictEqual({ leaseMs: 20_000, sweepMs: 5000 });
  expect(coordination.leaseMs + coordination.sweepMs).toBeLessThan(30_000);
  expect(loadConfig({ ...minimal, TURN_LEASE_SEC: '4', TURN_SWEEP_SEC: '1' }).coordination).toStrictEqual({ leaseMs: 4000, sweepMs: 1000 });
  expect(errorFor({ ...minimal, TURN_LEASE_SEC: '1' })).toMatch(/TURN_LEASE_SEC is invalid/);
  expect(errorFor({ ...minimal, TURN_SWEEP_SEC: 'often' })).toMatch(/TURN_SWEEP_SEC is invalid/);
});

test('SLACK_STREAMING is auto or off', () => {
  expect(loadConfig({ ...minimal, SLACK_STREAMING: 'off' }).slack.streaming).toBe('off');
  expect(loadConfig({ ...minimal, SLACK_STREAMING: '' }).slack.streaming).toBe('auto');
  expect(errorFor({ ...minimal, SLACK_STREAMING: 'yes' })).toMatch(/^Configuration error: SLACK_STREAMING is invalid/);
});

test('each missing or wrong variable is named in one clear message', () => {
  expect(errorFor({ ...minimal, SLACK_BOT_TOKEN: '' })).toMatch(/SLACK_BOT_TOKEN is required/);
  expect(errorFor({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 's' })).toMatch(/OPENAI_API_KEY is required/);
  expect(errorFor({ SLACK_BOT_TOKEN: 'xoxb-1', OPENAI_API_KEY: 'sk' })).toMatch(/SLACK_SIGNING_SECRET is required in HTTP mode/);
  expect(errorFor({ ...minimal, PORT: 'eighty' })).toMatch(/^Configuration error: PORT is invalid/);
  expect(errorFor({ ...minimal, STORAGE_BACKEND: 's3' })).toMatch(/STORAGE_BACKEND is invalid/);
  expect(errorFor({ ...minimal, STORAGE_BACKEND: 'gcs', SANDBOX_BACKEND: 'cloudrun' })).toMatch(/GCS_BUCKET is required/);
  expect(errorFor({ ...minimal, STORAGE_BACKEND: 'gcs', GCS_BUCKET: 'b', SANDBOX_BACKEND: 'cloudrun' })).toMatch(/GCP_PROJECT is required/);
  expect(errorFor({ ...minimal, SANDBOX_BACKEND: 'cloudrun' })).toMatch(/SANDBOX_BACKEND is cloudrun, which needs STORAGE_BACKEND=gcs/);
  expect(errorFor({ ...minimal, SLACK_API_URL: 'not a url' })).toMatch(/SLACK_API_URL is invalid/);
  expect(errorFor({ ...minimal, SANDBOX_NETWORK: 'maybe' })).toMatch(/SANDBOX_NETWORK is invalid: must be egress or off/);
  expect(errorFor({ ...minimal, MAX_CONCURRENT_TURNS: '0' })).toMatch(/MAX_CONCURRENT_TURNS is invalid/);
  expect(errorFor({ ...minimal, SLACK_APP_TOKEN: 'xoxb-wrong' })).toMatch(/SLACK_APP_TOKEN must be an app-level token/);
});

test('several problems are reported at once, one line each, each naming its variable', () => {
  const message = errorFor({
    SLACK_BOT_TOKEN: 'not-a-bot-token',
    SLACK_SIGNING_SECRET: 'secret',
    OPENAI_BASE_URL: 'localhost:4001',
    PORT: 'eighty',
    SANDBOX_NETWORK: 'maybe',
  });
  const lines = message.split('\n');
  const variableOf = (line: string) => /^Configuration error: ([A-Z_]+) /.exec(line)?.[1] ?? line;
  const byVariable = new Map(lines.map((line) => [variableOf(line), line]));
  expect(lines, message).toHaveLength(5);
  expect([...byVariable.keys()].sort()).toStrictEqual(['OPENAI_API_KEY', 'OPENAI_BASE_URL', 'PORT', 'SANDBOX_NETWORK', 'SLACK_BOT_TOKEN']);
  expect(byVariable.get('OPENAI_API_KEY')).toMatch(/^Configuration error: OPENAI_API_KEY is required: the API key/);
  expect(byVariable.get('OPENAI_BASE_URL')).toBe('Configuration error: OPENAI_BASE_URL is invalid: must be an http:// or https:// URL such as http://127.0.0.1:4000/api/');
  expect(byVariable.get('PORT')).toMatch(/^Configuration error: PORT is invalid: /);
  expect(byVariable.get('SANDBOX_NETWORK')).toBe('Configuration error: SANDBOX_NETWORK is invalid: must be egress or off');
  expect(byVariable.get('SLACK_BOT_TOKEN')).toMatch(/^Configuration error: SLACK_BOT_TOKEN must be a bot token starting with xoxb-/);
  expect(message, 'a value is never echoed back').not.toContain('not-a-bot-token');
});

test('URLs need an http(s) scheme (zod 4 reads localhost:4001 as a URL with the scheme localhost:)', () => {
  expect(errorFor({ ...minimal, OPENAI_BASE_URL: 'localhost:4001' })).toMatch(/^Configuration error: OPENAI_BASE_URL is invalid: must be an http:\/\/ or https:\/\/ URL/);
  expect(errorFor({ ...minimal, SLACK_API_URL: 'ftp://127.0.0.1/api/' })).toMatch(/^Configuration error: SLACK_API_URL is invalid/);
  expect(errorFor({ ...minimal, GCS_API_ENDPOINT: '127.0.0.1:4443' })).toMatch(/GCS_API_ENDPOINT is invalid/);
  const config = loadConfig({ ...minimal, OPENAI_BASE_URL: 'http://127.0.0.1:4001/v1', SLACK_API_URL: 'https://slack.example/api/' });
  expect(config.openai.baseUrl).toBe('http://127.0.0.1:4001/v1');
  expect(config.slack.apiUrl).toBe('https://slack.example/api/');
});

test('SLACK_BOT_TOKEN must be a bot token (xoxb-), on its own line', () => {
  for (const token of ['xoxp-user-token', 'xapp-1-app-token', 'token']) {
    expect(errorFor({ ...minimal, SLACK_BOT_TOKEN: token }), token).toBe(
      'Configuration error: SLACK_BOT_TOKEN must be a bot token starting with xoxb- (OAuth & Permissions → Bot User OAuth Token)',
    );
  }
});

test('Socket Mode needs no signing secret; lists and booleans parse', () => {
  const config = loadConfig({
    SLACK_BOT_TOKEN: 'xoxb-1',
    SLACK_APP_TOKEN: 'xapp-1',
    OPENAI_API_KEY: 'sk',
    ALLOWED_CHANNELS: 'C1, C2',
    ADMIN_USERS: 'U9',
    USAGE_FOOTER: 'yes',
    SANDBOX_NETWORK: 'off',
    TURN_MAX_TOKENS: '5000',
  });
  expect(config.slack.appToken).toBe('xapp-1');
  expect(config.access.allowedChannels).toStrictEqual(['C1', 'C2']);
  expect(config.access.adminUsers).toStrictEqual(['U9']);
  expect(config.budgets.usageFooter).toBe(true);
  expect(config.budgets.turnMaxTokens).toBe(5000);
  expect(config.sandbox).toMatchObject({ backend: 'local', network: 'off' });
});

test('GCS_BUCKET must be a bucket name, and the two emulator endpoints come together', () => {
  const cloudRun = { ...minimal, STORAGE_BACKEND: 'gcs', SANDBOX_BACKEND: 'cloudrun', GCP_PROJECT: 'p', GCP_REGION: 'r', SANDBOX_JOB: 'j' };
  expect(errorFor({ ...cloudRun, GCS_BUCKET: 'gs://my-bucket' })).toBe(
    'Configuration error: GCS_BUCKET is invalid: a bucket name of lowercase letters, digits, - _ and . (without gs://), such as my-project-oi-workspaces',
  );
  expect(errorFor({ ...cloudRun, GCS_BUCKET: 'My_Bucket' })).toMatch(/GCS_BUCKET is invalid/);
  expect(errorFor({ ...cloudRun, GCS_BUCKET: 'b-1', CLOUD_RUN_API_ENDPOINT: 'http://127.0.0.1:1' })).toBe(
    'Configuration error: CLOUD_RUN_API_ENDPOINT and GCS_API_ENDPOINT go together (emulators and tests): set both or neither',
  );
  expect(errorFor({ ...cloudRun, GCS_BUCKET: 'b-1', GCS_API_ENDPOINT: 'http://127.0.0.1:1' })).toMatch(/CLOUD_RUN_API_ENDPOINT and GCS_API_ENDPOINT go together/);
  const config = loadConfig({ ...cloudRun, GCS_BUCKET: 'my-project-oi.workspaces' });
  expect(config.storage).toStrictEqual({ backend: 'gcs', bucket: 'my-project-oi.workspaces', apiEndpoint: undefined });
  expect(config.sandbox).toStrictEqual({ backend: 'cloudrun', project: 'p', region: 'r', job: 'j', apiEndpoint: undefined, session: true, sessionIdleSec: 600 });
});

test('the bot refuses to start without its settings, naming the variable and leaking nothing', async () => {
  const { code, output } = await runBotToExit({ SLACK_BOT_TOKEN: 'xoxb-secret-value', SLACK_SIGNING_SECRET: 'signing' });
  expect(code).toBe(1);
  expect(output).toMatch(/OPENAI_API_KEY is required/);
  expect(output).not.toContain('xoxb-secret-value');
});

test('Cloud Run sessions are on by default and idle out after SANDBOX_SESSION_IDLE_SEC (600 s)', () => {
  const cloud = { ...minimal, STORAGE_BACKEND: 'gcs', GCS_BUCKET: 'oi-bucket', SANDBOX_BACKEND: 'cloudrun', GCP_PROJECT: 'p', GCP_REGION: 'r', SANDBOX_JOB: 'j' };
  expect(loadConfig(cloud).sandbox).toMatchObject({ backend: 'cloudrun', session: true, sessionIdleSec: 600 });
  expect(loadConfig({ ...cloud, SANDBOX_SESSION: 'off', SANDBOX_SESSION_IDLE_SEC: '120' }).sandbox).toMatchObject({ session: false, sessionIdleSec: 120 });
  expect(errorFor({ ...cloud, SANDBOX_SESSION: 'sometimes' })).toMatch(/SANDBOX_SESSION is invalid: must be true or false/);
  expect(errorFor({ ...cloud, SANDBOX_SESSION_IDLE_SEC: '0' })).toMatch(/SANDBOX_SESSION_IDLE_SEC is invalid/);
});
