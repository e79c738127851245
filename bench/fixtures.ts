import { mkdtemp, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogLevel, WebClient } from '@slack/web-api';
import OpenAI from 'openai';
import { loadConfig, type Config } from '../controller/config.js';
import { createBot, sandboxLibraries } from '../controller/create-bot.js';
import { silentLogger } from '../controller/logger.js';
import type { Sandbox, SandboxSession, StepResult } from '../controller/sandbox/sandbox.js';
import type { Mention } from '../controller/slack/mention.js';
import type { Bot } from '../controller/turn/bot.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import type { WorkspaceStore } from '../controller/workspace/workspace.js';
import { FakeOpenAI, executeCall, lastUserText, toolResults, type ChatRequest, type Reply } from '../test/fakes/fake-openai.js';
import { FakeSlack } from '../test/fakes/fake-slack.js';
import { BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET } from '../test/helpers/bot-process.js';
import { nextMessageTs } from '../test/helpers/slack-events.js';

/**
 * What the figures share: the instant scripted model, a sandbox that returns at once, and a Bot
 * composed by createBot() as controller/main.ts composes it (real WebClient and OpenAI clients pointed at
 * the fakes on 127.0.0.1), minus the Bolt transport.
 */

export const BOT_USER = 'UBOT';
export const TEAM = 'T1';
export { BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET };

/**
 * The instant model of the benchmarks. `run <n>: <code>` makes it call execute n times in a row
 * (`{i}` in the code becomes the step number), then answer `Done: <last tool output>`; any other
 * text gets `Done: <text>` at once. It never waits.
 */
export function stepsModel(request: ChatRequest): Reply {
  const text = lastUserText(request);
  const match = /run (\d+):\s*([\s\S]*)$/.exec(text);
  const usage = { total_tokens: 10 };
  if (match === null) return { content: `Done: ${text.slice(0, 100)}`, usage };
  const results = toolResults(request, { sinceLastUser: true });
  if (results.length < Number(match[1])) return { ...executeCall(match[2]!.replaceAll('{i}', String(results.length + 1))), usage };
  return { content: `Done: ${results.at(-1)?.content ?? ''}`, usage };
}

/** A Sandbox that does no work: every step "prints" one line and changes nothing. */
export class InstantSandbox implements Sandbox {
  steps = 0;

  session(): SandboxSession {
    return { run: () => this.step(), release: async () => {} };
  }

  async close(): Promise<void> {}

  private async step(): Promise<StepResult> {
    this.steps += 1;
    return {
      stepId: `instant-${this.steps}`,
      exitCode: 0,
      stdout: '1\n',
      stderr: '',
      outputTruncated: false,
      error: null,
      durationMs: 0,
      figures: [],
      files: [],
      unsaved: [],
      notes: [],
    };
  }
}

/**
 * Runs a mention through the Bot and times it to the moment its answer (`Done…`) reached Slack: what
 * the user waits for. `finished` resolves when handleMention does (the turn's last status edit may
 * wait for STATUS_INTERVAL_MS after the answer).
 */
export async function answerTime(harness: InProcessBot, mention: Mention, timeoutMs = 60_000): Promise<{ ms: number; finished: Promise<void> }> {
  const started = performance.now();
  const finished = harness.bot.handleMention(mention);
  await harness.slack.waitFor(
    (fake) => fake.botMessagesIn(mention.key.channel, mention.key.threadTs).some((message) => (message.text ?? '').startsWith('Done')),
    timeoutMs,
  );
  return { ms: performance.now() - started, finished };
}

export interface InProcessBot {
  bot: Bot;
  config: Config;
  slack: FakeSlack;
  ai: FakeOpenAI;
  client: WebClient;
  openai: OpenAI;
  store: WorkspaceStore;
  /** A mention in a new thread (or in `threadTs`), as the Slack listener would build it. */
  mention: (text: string, threadTs?: string) => Mention;
  close: () => Promise<void>;
}

/**
 * A Bot wired by createBot() like main.ts: env through loadConfig, real clients, a LocalWorkspaceStore in a temp
 * dir (or the `store` given).
 */
export async function startInProcessBot(options: { sandbox: Sandbox; env?: Record<string, string>; store?: WorkspaceStore }): Promise<InProcessBot> {
  const slack = await new FakeSlack({ botToken: BOT_TOKEN, botUserId: BOT_USER, teamId: TEAM }).start();
  const ai = await new FakeOpenAI({ apiKey: OPENAI_KEY }).start();
  ai.script(stepsModel);
  const dataDir = await mkdtemp(join(tmpdir(), 'oi-bench-'));
  const config = loadConfig({
    SLACK_BOT_TOKEN: BOT_TOKEN,
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: slack.apiUrl,
    OPENAI_API_KEY: OPENAI_KEY,
    OPENAI_BASE_URL: ai.baseUrl,
    OPENAI_MODEL: 'bench-model',
    DATA_DIR: dataDir,
    LOG_LEVEL: 'ERROR',
    ...options.env,
  });
  // The same client options as main.ts and Bolt's own client.
  const client = new WebClient(config.slack.botToken, { slackApiUrl: config.slack.apiUrl, logLevel: LogLevel.ERROR });
  const openai = new OpenAI({ apiKey: config.openai.apiKey, baseURL: config.openai.baseUrl, maxRetries: 3, timeout: 180_000 });
  const store = options.store ?? new LocalWorkspaceStore(config.storage.backend === 'local' ? config.storage.dataDir : dataDir);
  // The libraries main.ts would name for this configuration, from the same per-interpreter cache main.ts uses.
  const cacheDir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'slack-code-interpreter');
  const { libraries } = await sandboxLibraries(config, { searchPath: process.env.PATH ?? '', cacheDir });
  const bot = createBot(config, { slack: client, openai, store, sandbox: options.sandbox, logger: silentLogger, libraries });
  return {
    bot,
    config,
    slack,
    ai,
    client,
    openai,
    store,
    mention: (text, threadTs) => {
      const ts = nextMessageTs();
      return { key: { team: TEAM, channel: 'C1', threadTs: threadTs ?? ts }, user: 'U1', text, ts, files: [] };
    },
    close: async () => {
      await Promise.all([slack.close(), ai.close()]);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
