import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../controller/config.js';
import { ConfigError } from '../controller/errors.js';
import { runBotToExit } from './helpers/bot-process.js';

const minimal = { SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 'secret', OPENAI_API_KEY: 'sk-1' };

function errorFor(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.message;
  }
  assert.fail('expected a configuration error');
}

test('embedded defaults need only the Slack and OpenAI secrets', () => {
  const config = loadConfig(minimal);
  assert.equal(config.storage.backend, 'local');
  assert.equal(config.sandbox.backend, 'local');
  assert.equal(config.slack.port, 3000);
  assert.equal(config.limits.maxConcurrentTurns, 8);
  assert.deepEqual(config.access.allowedChannels, []);
  assert.equal(config.budgets.usageFooter, false);
  assert.equal(config.sandbox.backend === 'local' && config.sandbox.network, true);
});

test('each missing or wrong variable is named in one clear message', () => {
  assert.match(errorFor({ ...minimal, SLACK_BOT_TOKEN: '' }), /SLACK_BOT_TOKEN is required/);
  assert.match(errorFor({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 's' }), /OPENAI_API_KEY is required/);
  assert.match(errorFor({ SLACK_BOT_TOKEN: 'xoxb-1', OPENAI_API_KEY: 'sk' }), /SLACK_SIGNING_SECRET is required in HTTP mode/);
  assert.match(errorFor({ ...minimal, PORT: 'eighty' }), /^Configuration error: PORT is invalid/);
  assert.match(errorFor({ ...minimal, STORAGE_BACKEND: 's3' }), /STORAGE_BACKEND is invalid/);
  assert.match(errorFor({ ...minimal, STORAGE_BACKEND: 'gcs', SANDBOX_BACKEND: 'cloudrun' }), /GCS_BUCKET is required/);
  assert.match(errorFor({ ...minimal, STORAGE_BACKEND: 'gcs', GCS_BUCKET: 'b', SANDBOX_BACKEND: 'cloudrun' }), /GCP_PROJECT is required/);
  assert.match(errorFor({ ...minimal, SANDBOX_BACKEND: 'cloudrun' }), /SANDBOX_BACKEND is cloudrun, which needs STORAGE_BACKEND=gcs/);
  assert.match(errorFor({ ...minimal, SLACK_API_URL: 'not a url' }), /SLACK_API_URL is invalid/);
  assert.match(errorFor({ ...minimal, SANDBOX_NETWORK: 'maybe' }), /SANDBOX_NETWORK is invalid: must be true or false/);
  assert.match(errorFor({ ...minimal, MAX_CONCURRENT_TURNS: '0' }), /MAX_CONCURRENT_TURNS is invalid/);
  assert.match(errorFor({ ...minimal, SLACK_APP_TOKEN: 'xoxb-wrong' }), /SLACK_APP_TOKEN must be an app-level token/);
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
  assert.equal(config.slack.appToken, 'xapp-1');
  assert.deepEqual(config.access.allowedChannels, ['C1', 'C2']);
  assert.deepEqual(config.access.adminUsers, ['U9']);
  assert.equal(config.budgets.usageFooter, true);
  assert.equal(config.budgets.turnMaxTokens, 5000);
  assert.equal(config.sandbox.backend === 'local' && config.sandbox.network, false);
});

test('the bot refuses to start without its settings, naming the variable and leaking nothing', async () => {
  const { code, output } = await runBotToExit({ SLACK_BOT_TOKEN: 'xoxb-secret-value', SLACK_SIGNING_SECRET: 'signing' });
  assert.equal(code, 1);
  assert.match(output, /OPENAI_API_KEY is required/);
  assert.ok(!output.includes('xoxb-secret-value'));
});
