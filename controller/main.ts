import OpenAI from 'openai';
import { Bot } from './turn/bot.js';
import { loadConfig, stepLimits, type Config } from './config.js';
import { ConfigError, describeError } from './errors.js';
import { createLogger, type Logger } from './logger.js';
import { preinstalledLibraries } from './agent/requirements.js';
import { buildSystemPrompt } from './agent/system-prompt.js';
import { createSlackApp, HealthState, registerHandlers } from './slack/slack-app.js';
import type { Sandbox } from './sandbox/sandbox.js';
import { LocalSandbox } from './sandbox/local/local-sandbox.js';
import { LocalWorkspaceStore } from './workspace/local-workspace.js';
import type { WorkspaceStore } from './workspace/workspace.js';
import { HISTORY_STATE } from './agent/history.js';

/**
 * The composition root: the only place that reads process.env (through config.ts) and constructs
 * clients. Everything else receives what it needs through its constructor.
 */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n(see README.md, Configuration)\n`);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger({ level: config.logLevel });
  const { store, sandbox } = await createBackends(config, logger);

  const openai = new OpenAI({
    apiKey: config.openai.apiKey,
    baseURL: config.openai.baseUrl,
    maxRetries: 3,
    timeout: 180_000,
  });
  const health = new HealthState();
  const slack = createSlackApp(config, logger, health);
  const { app } = slack;
  const network = config.sandbox.backend === 'local' ? config.sandbox.network : true;
  const bot = new Bot({
    config,
    client: app.client,
    openai,
    store,
    sandbox,
    logger,
    statusIntervalMs: config.statusIntervalMs,
    systemPrompt: buildSystemPrompt({
      libraries: preinstalledLibraries(),
      maxSteps: config.limits.maxStepsPerTurn,
      stepTimeoutSec: config.limits.stepTimeoutSec,
      network,
    }),
  });
  registerHandlers(app, bot, {
    config,
    logger,
    isKnownThread: async (key) => (await store.open(key).readState(HISTORY_STATE)) !== undefined,
  });

  await slack.start();
  health.ready = true;
  logger.info('bot started', {
    mode: config.slack.appToken === undefined ? 'http' : 'socket',
    port: config.slack.port,
    storage: config.storage.backend,
    sandbox: config.sandbox.backend,
    model: config.openai.model,
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    health.ready = false;
    // Let running turns finish for a while (Cloud Run allows 10 s after SIGTERM), then stop them cleanly.
    const deadline = setTimeout(() => bot.stopAll(), 8_000);
    await Promise.race([bot.drain(), new Promise((resolve) => setTimeout(resolve, 9_000))]);
    clearTimeout(deadline);
    await slack.stop().catch(() => {});
    await sandbox.close?.();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

async function createBackends(config: Config, logger: Logger): Promise<{ store: WorkspaceStore; sandbox: Sandbox }> {
  if (config.storage.backend === 'local' && config.sandbox.backend === 'local') {
    const store = new LocalWorkspaceStore(config.storage.dataDir);
    const sandbox = new LocalSandbox({
      python: config.sandbox.python,
      network: config.sandbox.network,
      isolation: config.sandbox.isolation,
      limits: stepLimits(config),
      logger,
    });
    logger.info(sandbox.describeIsolation());
    return { store, sandbox };
  }
  // Loaded only when used: the local mode never pays for the Google Cloud client libraries.
  const { createGcpClients } = await import('./gcp/gcp-clients.js');
  return createGcpClients(config, logger);
}

main().catch((error: unknown) => {
  process.stderr.write(`The bot could not start: ${describeError(error)}\n`);
  process.exit(1);
});
