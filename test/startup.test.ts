import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FakeSlack } from './fakes/fake-slack.js';
import { BOT_TOKEN, OPENAI_KEY, runBotToExit, SIGNING_SECRET, startBot } from './helpers/bot-process.js';
import { startGcpFakes } from './helpers/gcp-fakes.js';
import { BOT_USER, TEAM } from './helpers/harness.js';

/**
 * Start-up fails fast (issue 12): the bot started as operators start it, each problem one line on stderr naming
 * what to fix, exit code 1, no stack trace, and all problems of one run together. Slack is FakeSlack on 127.0.0.1;
 * Google is the fakes, or (without credentials) nothing at all: the metadata server is never looked for
 * (METADATA_SERVER_DETECTION=none), and any request meant for Google would reach a local proxy that records it.
 */

const APP_TOKEN = 'xapp-1-the-right-app-token';
let slack: FakeSlack;
let home: string;

beforeAll(async () => {
  slack = await new FakeSlack({ botToken: BOT_TOKEN, botUserId: BOT_USER, teamId: TEAM, socketMode: { appToken: APP_TOKEN, url: () => 'ws://127.0.0.1:1/' } }).start();
  home = await mkdtemp(join(tmpdir(), 'oi-startup-home-'));
});
afterAll(async () => {
  await slack.close();
  await rm(home, { recursive: true, force: true });
});

/** The settings of a bot that would start (local backends), pointed at FakeSlack; nothing of OpenAI is called at start-up. */
const working = () => ({
  SLACK_BOT_TOKEN: BOT_TOKEN,
  SLACK_SIGNING_SECRET: SIGNING_SECRET,
  SLACK_API_URL: slack.apiUrl,
  OPENAI_API_KEY: OPENAI_KEY,
  OPENAI_BASE_URL: 'http://127.0.0.1:9/v1',
  PORT: '0',
});

/** What operators see: problem lines on stderr (besides the JSON log lines and the closing "see README" hint), no stack trace. */
function problemLines(stderr: string): string[] {
  expect(stderr, 'no stack trace').not.toMatch(/^\s+at /m);
  return stderr.split('\n').filter((line) => line !== '' && !line.startsWith('{') && !line.startsWith('(see '));
}

test('with no settings at all every required name is in the one message', { timeout: 60_000 }, async () => {
  const { code, stderr } = await runBotToExit({ HOME: home });
  expect(code).toBe(1);
  const lines = problemLines(stderr);
  expect(lines.map((line) => /^Configuration error: ([A-Z_]+) /.exec(line)?.[1])).toStrictEqual(['SLACK_BOT_TOKEN', 'OPENAI_API_KEY', 'SLACK_SIGNING_SECRET']);
});

test('a URL without its scheme is named, on one line', { timeout: 60_000 }, async () => {
  const { code, stderr } = await runBotToExit({ ...working(), OPENAI_BASE_URL: 'localhost:4001' });
  expect(code).toBe(1);
  expect(problemLines(stderr)).toStrictEqual(['Configuration error: OPENAI_BASE_URL is invalid: must be an http:// or https:// URL such as http://127.0.0.1:4000/api/']);
});

describe("Slack's answer to the tokens", () => {
  test('a bot token Slack rejects (invalid_auth): exit 1, one line naming SLACK_BOT_TOKEN, no stack trace', { timeout: 60_000 }, async () => {
    const { code, stderr } = await runBotToExit({ ...working(), SLACK_BOT_TOKEN: 'xoxb-a-token-slack-does-not-know' });
    expect(code).toBe(1);
    const lines = problemLines(stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^Configuration error: SLACK_BOT_TOKEN was rejected by Slack \(auth\.test: invalid_auth\): copy it again/);
    expect(stderr, 'the token is never echoed').not.toContain('a-token-slack-does-not-know');
    expect(slack.unexpected.map((call) => call.method)).toContain('auth.test');
  });

  test('in Socket Mode an app token Slack rejects names SLACK_APP_TOKEN (apps.connections.open), beside a rejected bot token', { timeout: 60_000 }, async () => {
    const { code, stderr } = await runBotToExit({ ...working(), SLACK_SIGNING_SECRET: '', SLACK_APP_TOKEN: 'xapp-1-not-this-one', SLACK_BOT_TOKEN: 'xoxb-not-this-one' });
    expect(code).toBe(1);
    const lines = problemLines(stderr);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^Configuration error: SLACK_BOT_TOKEN was rejected by Slack \(auth\.test: invalid_auth\)/);
    expect(lines[1]).toMatch(/^Configuration error: SLACK_APP_TOKEN was rejected by Slack \(apps\.connections\.open: invalid_auth\): .*connections:write/);
  });

  test('Slack is asked once (auth.test), and Bolt does not ask again when the bot starts', { timeout: 60_000 }, async () => {
    const before = slack.callsTo('auth.test').length;
    const bot = await startBot({ slackApiUrl: slack.apiUrl, openaiBaseUrl: 'http://127.0.0.1:9/v1' });
    try {
      expect(slack.callsTo('auth.test').length - before).toBe(1);
      expect(bot.logLines().find((line) => line.message === 'bot started')).toBeDefined();
    } finally {
      await bot.stop();
    }
  });
});

describe('the Cloud Run backend', () => {
  let proxy: Server;
  const proxied: string[] = [];
  let gcp: Awaited<ReturnType<typeof startGcpFakes>>;
  beforeAll(async () => {
    // Anything that tried to reach Google without credentials would arrive here, not on the internet.
    proxy = createServer((socket) => {
      socket.once('data', (chunk: Buffer) => proxied.push(chunk.toString('latin1').split('\r\n')[0]!));
      socket.destroy();
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    gcp = await startGcpFakes();
  });
  afterAll(async () => {
    await new Promise((resolve) => proxy.close(resolve));
    await gcp.close();
  });

  test('without Google credentials the bot stops at once, naming Application Default Credentials, and sends nothing to Google', { timeout: 60_000 }, async () => {
    const port = (proxy.address() as { port: number }).port;
    const { code, stderr } = await runBotToExit({
      ...working(),
      HOME: home,
      STORAGE_BACKEND: 'gcs',
      GCS_BUCKET: 'oi-e2e',
      SANDBOX_BACKEND: 'cloudrun',
      GCP_PROJECT: 'test-project',
      GCP_REGION: 'us-central1',
      SANDBOX_JOB: 'oi-sandbox',
      METADATA_SERVER_DETECTION: 'none',
      HTTPS_PROXY: `http://127.0.0.1:${port}`,
      HTTP_PROXY: `http://127.0.0.1:${port}`,
      NO_PROXY: '127.0.0.1,localhost',
    });
    expect(code).toBe(1);
    const lines = problemLines(stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^Configuration error: no Google credentials for SANDBOX_BACKEND=cloudrun \(Application Default Credentials: Could not load the default credentials/);
    expect(lines[0]).toMatch(/--service-account/);
    expect(proxied, 'no request left for Google').toStrictEqual([]);
  });

  test('a job that does not exist (Cloud Run answers 404) is named with SANDBOX_JOB and the role to check', { timeout: 60_000 }, async () => {
    const { code, stderr } = await runBotToExit({ ...working(), ...gcp.env, SANDBOX_JOB: 'no-such-job' });
    expect(code).toBe(1);
    const lines = problemLines(stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^Configuration error: SANDBOX_JOB: cannot read Cloud Run job projects\/test-project\/locations\/us-central1\/jobs\/no-such-job \(NOT_FOUND: /);
    expect(lines[0]).toMatch(/oiSandboxRunner role on the job/);
    expect(gcp.run.requests.filter((request) => request.status === 404).map((request) => request.path)).toContain(
      '/v2/projects/test-project/locations/us-central1/jobs/no-such-job',
    );
  });

  test('a bucket that does not exist and missing permissions on the job are reported together', { timeout: 60_000 }, async () => {
    gcp.run.jobSettings.permissions.splice(0, Infinity, 'run.jobs.get', 'run.executions.get');
    try {
      const { code, stderr } = await runBotToExit({ ...working(), ...gcp.env, GCS_BUCKET: 'no-such-bucket' });
      expect(code).toBe(1);
      const lines = problemLines(stderr);
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(/^Configuration error: GCS_BUCKET: cannot read bucket no-such-bucket \(.*\): it does not exist$/);
      expect(lines[1]).toBe(
        "Configuration error: SANDBOX_JOB: the controller's service account lacks run.jobs.run, run.jobs.runWithOverrides on Cloud Run job oi-sandbox: bind the oiSandboxRunner role on the job (docs/deploy.md, steps 2 and 6)",
      );
    } finally {
      gcp.run.jobSettings.permissions.splice(0, Infinity, 'run.jobs.get', 'run.jobs.run', 'run.jobs.runWithOverrides', 'run.executions.get', 'run.executions.cancel');
    }
  });
});
