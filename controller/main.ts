import { homedir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import type { LibraryList } from './agent/libraries.js';
import { loadConfig, stepLimits, type Config } from './config.js';
import { createBot, sandboxLibraries } from './create-bot.js';
import { ConfigError, describeError } from './errors.js';
import { createLogger, type Logger } from './logger.js';
import type { Sandbox } from './sandbox/sandbox.js';
import { LocalSandbox } from './sandbox/local/local-sandbox.js';
import { registerListeners } from './slack/listeners.js';
import { checkSlackTokens } from './slack/slack-auth.js';
import { createSlackApp, HealthState } from './slack/slack-app.js';
import type { Bot } from './turn/bot.js';
import { LocalWorkspaceStore } from './workspace/local-workspace.js';
import type { WorkspaceStore } from './workspace/workspace.js';

/**
 * The composition root: the only place that reads process.env (through config.ts) and has the clients
 * constructed (the Slack app, OpenAI, and the storage and sandbox backends). Everything else receives what
 * it needs through its constructor. docs/architecture.md describes the layers below.
 *
 * Start-up fails fast, each problem on one line and all of them in one run: first the settings (config.ts), then,
 * at the same time, Slack's answer to the tokens (slack/slack-auth.ts), the backends (with Cloud Run: credentials,
 * bucket, token chain, job: gcp/startup-checks.ts) and the libraries the sandbox can import (agent/libraries.ts).
 */
async function main(): Promise<void> {
  const config = configOrExit();
  const logger = createLogger({ level: config.logLevel });
  for (const notice of config.notices) logger.warn(notice);
  const started = performance.now();
  const [slackCheck, backends, libraries] = await Promise.all([
    checkSlackTokens(config.slack),
    createBackends(config, logger),
    sandboxLibraries(config, { searchPath: process.env.PATH ?? '', cacheDir: cacheDirectory() }).catch(
      (error: unknown) => `Start-up error: could not list the libraries the sandbox can import (${firstLine(error)})`,
    ),
  ]);
  for (const warning of backends.warnings) logger.warn(warning);
  const problems = [...slackCheck.problems, ...backends.problems, ...(typeof libraries === 'string' ? [libraries] : [])];
  if (slackCheck.identity === undefined || typeof libraries === 'string' || problems.length > 0) exitWithProblems(problems);
  logLibraries(logger, libraries, config);

  const { store, sandbox } = backends;
  const openai = new OpenAI({ apiKey: config.openai.apiKey, baseURL: config.openai.baseUrl, maxRetries: 3, timeout: 180_000 });
  const health = new HealthState();
  const slack = createSlackApp(config, logger, health, slackCheck.identity!);
  const bot = createBot(config, { slack: slack.app.client, openai, store, sandbox, logger, libraries: libraries.libraries });
  registerListeners(slack.app, bot, { replyWithoutMention: config.replyWithoutMention, logger });

  await slack.start();
  health.ready = true;
  // Turns that instances which went away left unfinished are looked for now, then periodically.
  bot.start();
  logger.info('bot started', {
    mode: config.slack.appToken === undefined ? 'http' : 'socket',
    port: config.slack.port,
    storage: config.storage.backend,
    sandbox: config.sandbox.backend,
    model: config.openai.model,
    startupMs: Math.round(performance.now() - started),
  });
  const shutdown = shutdownOnce({ bot, health, logger, stop: () => slack.stop(), sandbox });
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

function configOrExit(): Config {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) exitWithProblems(error.message.split('\n'));
    throw error;
  }
}

/** Every start-up problem, one line each, and exit 1: no stack trace, nothing half-started. */
function exitWithProblems(problems: string[]): never {
  process.stderr.write(`${problems.join('\n')}\n(see README.md, Configuration, and docs/deploy.md, Troubleshooting)\n`);
  process.exit(1);
}

function firstLine(error: unknown): string {
  return describeError(error).split('\n')[0]!;
}

/** Where the local library probe keeps its answer per interpreter (XDG's cache folder). */
function cacheDirectory(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? homedir(), '.cache'), 'slack-code-interpreter');
}

function logLibraries(logger: Logger, list: LibraryList, config: Config): void {
  const names = Object.keys(list.libraries);
  logger.info('sandbox libraries', { source: list.source, count: names.length, libraries: names.join(' ') });
  if (list.source === 'guaranteed' && config.sandbox.backend === 'cloudrun') {
    logger.warn('sandbox-image/libraries.json not found: the model is told only of dill, matplotlib, numpy and pandas (docs/deploy.md, step 5)');
  }
}

interface Backends {
  store: WorkspaceStore;
  sandbox: Sandbox;
  problems: string[];
  warnings: string[];
}

async function createBackends(config: Config, logger: Logger): Promise<Backends> {
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
    return { store, sandbox, problems: [], warnings: [] };
  }
  // Loaded only when used: the local mode never pays for the Google Cloud client libraries.
  const { createCheckedGcpBackends } = await import('./gcp/gcp-clients.js');
  return createCheckedGcpBackends(config, logger);
}

/**
 * SIGTERM/SIGINT: take no new turn; let running turns finish for a while (Cloud Run allows 10 s after SIGTERM),
 * then cut them short (each tells its thread it was interrupted); whatever is still running or waiting then is
 * handed over to the other instances through the store, never dropped.
 */
function shutdownOnce(parts: { bot: Bot; health: HealthState; logger: Logger; stop: () => Promise<void>; sandbox: Sandbox }) {
  let stopping = false;
  return async (signal: string) => {
    if (stopping) return;
    stopping = true;
    parts.logger.info('shutting down', { signal });
    parts.health.ready = false;
    parts.bot.close();
    const deadline = setTimeout(() => parts.bot.stopAll(), 8_000);
    await Promise.race([parts.bot.drain(), new Promise((resolve) => setTimeout(resolve, 9_000))]);
    clearTimeout(deadline);
    await parts.bot.handOver().catch(() => {});
    await parts.stop().catch(() => {});
    await parts.sandbox.close();
    process.exit(0);
  };
}

main().catch((error: unknown) => {
  process.stderr.write(`The bot could not start: ${describeError(error)}\n`);
  process.exit(1);
});
