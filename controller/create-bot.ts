import type { WebClient } from '@slack/web-api';
import type OpenAI from 'openai';
import { OpenAIChatModel } from './agent/chat-model.js';
import { probeLibraries, recordedLibraries, type LibraryList, type LibraryVersions } from './agent/libraries.js';
import { buildSystemPrompt } from './agent/system-prompt.js';
import type { Config } from './config.js';
import type { Logger } from './logger.js';
import { resolvePython } from './sandbox/local/python.js';
import type { Sandbox } from './sandbox/sandbox.js';
import { webSlackThreads } from './slack/slack-thread.js';
import { Bot } from './turn/bot.js';
import type { WorkspaceStore } from './workspace/workspace.js';

/** The clients and backends the Bot runs on, constructed by the caller (main.ts in production, bench/ for figures). */
export interface BotClients {
  slack: WebClient;
  openai: OpenAI;
  store: WorkspaceStore;
  sandbox: Sandbox;
  logger: Logger;
  /** What the sandbox can import (sandboxLibraries): the system prompt names these and nothing else. */
  libraries: LibraryVersions;
}

/**
 * The libraries the configured sandbox can import (agent/libraries.ts): the Cloud Run image's recorded list, or a
 * probe of the local sandbox's Python (the interpreter LocalSandbox runs; resolvePython answers from its cache).
 */
export async function sandboxLibraries(config: Pick<Config, 'sandbox'>, options: { searchPath: string; cacheDir?: string }): Promise<LibraryList> {
  if (config.sandbox.backend === 'cloudrun') return recordedLibraries();
  const python = resolvePython(config.sandbox.python, options.searchPath).executable;
  return probeLibraries({ python, cacheDir: options.cacheDir });
}

/**
 * The Bot wired from Config and clients: the one place that turns settings into the model, the system prompt
 * and the Slack threads, so production (main.ts) and the benchmarks (bench/fixtures.ts) run the same bot.
 */
export function createBot(config: Config, clients: BotClients): Bot {
  const network = config.sandbox.backend === 'local' ? config.sandbox.network === 'egress' : true;
  return new Bot({
    config,
    threads: webSlackThreads(clients.slack),
    model: new OpenAIChatModel(clients.openai, config.openai.model),
    store: clients.store,
    sandbox: clients.sandbox,
    logger: clients.logger,
    systemPrompt: buildSystemPrompt({
      libraries: clients.libraries,
      maxSteps: config.limits.maxStepsPerTurn,
      stepTimeoutSec: config.limits.stepTimeoutSec,
      network,
    }),
  });
}
