import OpenAI from 'openai';
import { loadConfig, stepLimits, type Config } from './config.js';
import { createBot } from './create-bot.js';
import { ConfigError, describeError } from './errors.js';
import { createLogger, type Logger } from './logger.js';
import type { Sandbox } from './sandbox/sandbox.js';
import { LocalSandbox } from './sandbox/local/local-sandbox.js';
import { registerListeners } from './slack/listeners.js';
import { createSlackApp, HealthState } from './slack/slack-app.js';
import type { Bot } from './turn/bot.js';
import { LocalWorkspaceStore } from './workspace/local-workspace.js';
import type { WorkspaceStore } from './workspace/workspace.js';

/**
 * The composition root: the only place that reads process.env (through config.ts) and has the clients
 * constructed (the Slack app, OpenAI, and the storage and sandbox backends). Everything else receives what
 * it needs through its constructor. docs/architecture.md describes the layers below.
 */
async function main(): Promise<void> {
  const config = configOrExit();
  const logger = createLogger({ level: config.logLevel });
  for (const notice of config.notices) logger.warn(notice);
  const { store, sandbox } = await createBackends(config, logger);
  const openai = new OpenAI({ apiKey: config.openai.apiKey, baseURL: config.openai.baseUrl, maxRetries: 3, timeout: 180_000 });
  const health = new HealthState();
  const slack = createSlackApp(config, logger, health);
  const bot = createBot(config, { slack: slack.app.client, openai, store, sandbox, logger });
  registerListeners(slack.app, bot, { replyWithoutMention: config.replyWithoutMention, logger });

  await slack.start();
  health.ready = true;
  logger.info('bot started', {
    mode: config.slack.appToken === undefined ? 'http' : 'socket',
    port: config.slack.port,
    storage: config.storage.backend,
    sandbox: config.sandbox.backend,
    model: config.openai.model,
  });
  const shutdown = shutdownOnce({ bot, health, logger, stop: () => slack.stop(), sandbox });
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

function configOrExit(): Config {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n(see README.md, Configuration)\n`);
      process.exit(1);
    }
    throw error;
  }
}

async function createBackends(config: Config, logger: Logger): Promise<{ store: WorkspaceStore; sandbox: Sandbox }> {
  if (config.storage.backend === 'local' && config.sandbox.backend === 'local') {
    const store = new LocalWorkspaceStore(config.storage.dataDir);
    const sandbox = new LocalSandbox({
      python: config.sandbox.python,
      network: config.sandbox.network,
      isolation: config.sandbox.isolation,
      session: config.sandbox.session,
      sessionIdleSec: config.sandbox.sessionIdleSec,
      maxSessions: config.sandbox.maxSessions,
      workspaceMaxMb: config.limits.workspaceMaxMb,
      limits: stepLimits(config),
      logger,
      searchPath: process.env.PATH,
    });
    logger.info(sandbox.describeIsolation());
    return { store, sandbox };
  }
  // Loaded only when used: the local mode never pays for the Google Cloud client libraries.
  const { createGcpClients } = await import('./gcp/gcp-clients.js');
  return createGcpClients(config, logger);
}

/** SIGTERM/SIGINT: let running turns finish for a while (Cloud Run allows 10 s after SIGTERM), then stop them cleanly. */
function shutdownOnce(parts: { bot: Bot; health: HealthState; logger: Logger; stop: () => Promise<void>; sandbox: Sandbox }) {
  let stopping = false;
  return async (signal: string) => {
    if (stopping) return;
    stopping = true;
    parts.logger.info('shutting down', { signal });
    parts.health.ready = false;
    const deadline = setTimeout(() => parts.bot.stopAll(), 8_000);
    await Promise.race([parts.bot.drain(), new Promise((resolve) => setTimeout(resolve, 9_000))]);
    clearTimeout(deadline);
    await parts.stop().catch(() => {});
    await parts.sandbox.close();
    process.exit(0);
  };
}

main().catch((error: unknown) => {
  process.stderr.write(`The bot could not start: ${describeError(error)}\n`);
  process.exit(1);
});
