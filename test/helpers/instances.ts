import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeOpenAI } from '../fakes/fake-openai.js';
import { FakeSlack } from '../fakes/fake-slack.js';
import { BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET, startBot, type BotProcess } from './bot-process.js';
import { waitForIdle } from './bot-idle.js';
import { BOT_USER, scriptedModel, TEAM, type Backend } from './harness.js';
import { mentionEvent, mentionText, nextMessageTs, postEvent } from './slack-events.js';

/**
 * Several bot processes on one store, as instances of one deployment (issue 15): one fake Slack, one fake OpenAI,
 * and one backend (a shared DATA_DIR, or one fake GCS bucket with one fake Cloud Run). Instances can be killed
 * and started again; what they accepted still counts for `idle()`.
 */
export interface Instances {
  slack: FakeSlack;
  ai: FakeOpenAI;
  backend: Backend;
  dataDir: string;
  /** The instances running now, in start order. */
  bots: BotProcess[];
  /** Starts one more instance on the same store. */
  start: (env?: Record<string, string>) => Promise<BotProcess>;
  /** SIGKILL: the instance dies where it is (no shutdown, no hand-over). */
  kill: (bot: BotProcess) => Promise<void>;
  /** Posts a mention to one instance (Slack holds the message too); `eventId` and `retryNum` make it a redelivery. */
  mention: (bot: BotProcess, text: string, options?: { threadTs?: string; ts?: string; eventId?: string; retryNum?: number }) => Promise<{ ts: string; threadTs: string; eventId: string; status: number }>;
  waitForReply: (threadTs: string, pattern: RegExp, timeoutMs?: number) => Promise<string>;
  idle: () => Promise<{ barrierTs: string }>;
  close: () => Promise<void>;
}

export async function startInstances(makeBackend: () => Promise<Backend>, count: number, env: Record<string, string> = {}): Promise<Instances> {
  const slack = await new FakeSlack({ botToken: BOT_TOKEN, botUserId: BOT_USER, teamId: TEAM }).start();
  const ai = await new FakeOpenAI({ apiKey: OPENAI_KEY }).start();
  ai.script(scriptedModel);
  const backend = await makeBackend();
  const dataDir = await mkdtemp(join(tmpdir(), 'oi-instances-'));
  const gone: BotProcess[] = [];
  const instances: Instances = {
    slack,
    ai,
    backend,
    dataDir,
    bots: [],
    start: async (extra = {}) => {
      const bot = await startBot({ slackApiUrl: slack.apiUrl, openaiBaseUrl: ai.baseUrl, dataDir, env: { ...backend.env, ...env, ...extra } });
      instances.bots.push(bot);
      return bot;
    },
    kill: async (bot) => {
      const exited = new Promise((resolve) => bot.child.once('exit', resolve));
      bot.child.kill('SIGKILL');
      await exited;
      instances.bots = instances.bots.filter((candidate) => candidate !== bot);
      gone.push(bot);
    },
    mention: async (bot, text, options = {}) => {
      const ts = options.ts ?? nextMessageTs();
      const event = mentionEvent({ channel: 'C1', user: 'U1', text: mentionText(BOT_USER, text), ts, thread_ts: options.threadTs });
      if (options.retryNum === undefined) slack.seedFromEvent(event);
      const result = await postEvent(bot.eventsUrl, SIGNING_SECRET, event, { eventId: options.eventId, retryNum: options.retryNum, retryReason: options.retryNum === undefined ? undefined : 'http_timeout' });
      return { ts, threadTs: options.threadTs ?? ts, eventId: result.eventId, status: result.status };
    },
    waitForReply: (threadTs, pattern, timeoutMs = 20_000) =>
      slack.waitFor((fake) => fake.botMessagesIn('C1', threadTs).find((message) => pattern.test(message.text ?? ''))?.text, timeoutMs),
    idle: () => waitForIdle({ slack, ai, bots: instances.bots, gone, botUser: BOT_USER }),
    close: async () => {
      for (const bot of instances.bots) await bot.stop();
      await Promise.all([slack.close(), ai.close(), backend.close()]);
    },
  };
  for (let index = 0; index < count; index++) await instances.start();
  return instances;
}
