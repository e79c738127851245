import { LocalWorkspaceStore } from '../../controller/workspace/local-workspace.js';
import type { WorkspaceStore } from '../../controller/workspace/workspace.js';
import { FakeOpenAI, lastUserText, toolResults, executeCall, type ChatRequest, type Reply } from '../fakes/fake-openai.js';
import { FakeSlack } from '../fakes/fake-slack.js';
import { BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET, startBot, type BotProcess } from './bot-process.js';
import { waitForIdle, type IdleOptions } from './bot-idle.js';
import { mentionEvent, mentionText, nextMessageTs, postEvent } from './slack-events.js';

/**
 * The whole bot as operators start it (`npm start`'s command), against a fake Slack and a fake OpenAI on
 * 127.0.0.1, with one storage + sandbox backend. The end-to-end test files build on this.
 */

export const BOT_USER = 'UBOT';
export const TEAM = 'T1';

export interface Backend {
  /** Environment for the bot process (on top of Slack/OpenAI settings and DATA_DIR). */
  env: Record<string, string>;
  /** The same store the bot uses, to look at files from the outside. */
  store: (dataDir: string) => WorkspaceStore;
  close: () => Promise<void>;
}

/** The embedded defaults: workspaces in DATA_DIR, steps in a local Python process (bubblewrap when present). */
export const localBackend = async (): Promise<Backend> => ({
  env: {},
  store: (dataDir) => new LocalWorkspaceStore(dataDir),
  close: async () => {},
});

/**
 * The deterministic "model" of the end-to-end tests. A user message `run: <code>` makes it call
 * execute with that code, then answer `Result: <tool output>`; any other text is echoed back.
 */
export function scriptedModel(request: ChatRequest): Reply {
  // The bot appends notes about uploads (and files others shared) after the user's own text: the code ends before them.
  const text = lastUserText(request).split(/\n\n(?:I uploaded |<@\w+> shared )/)[0]!;
  const results = toolResults(request, { sinceLastUser: true });
  const match = /run:\s*([\s\S]*)$/.exec(text);
  if (match === null) return { content: `echo: ${lastUserText(request)}`, usage: { total_tokens: 10 } };
  if (results.length === 0) return { ...executeCall(match[1]!), usage: { total_tokens: 10 } };
  return { content: `Result: ${results.at(-1)!.content}`, usage: { total_tokens: 10 } };
}

export interface MentionOptions {
  channel?: string;
  threadTs?: string;
  user?: string;
  files?: unknown[];
  eventId?: string;
  retryNum?: number;
}

export interface Harness {
  slack: FakeSlack;
  ai: FakeOpenAI;
  bot: BotProcess;
  backend: Backend;
  /** Posts a mention in a new thread (or in `threadTs`) and returns its ts. */
  mention: (text: string, options?: MentionOptions) => Promise<{ ts: string; threadTs: string; status: number; eventId: string }>;
  /** Waits until the thread has a bot message matching `pattern` and returns its text. */
  waitForReply: (threadTs: string, pattern: RegExp, channel?: string, timeoutMs?: number) => Promise<string>;
  /**
   * Waits until the bot has handled every event sent so far and every turn it started has ended (see
   * bot-idle.ts); resolves with the thread of the barrier mention it posted for that.
   */
  idle: (options?: IdleOptions) => Promise<{ barrierTs: string }>;
}

export async function startHarness(makeBackend: () => Promise<Backend>, env: Record<string, string> = {}): Promise<Harness> {
  const slack = await new FakeSlack({ botToken: BOT_TOKEN, botUserId: BOT_USER, teamId: TEAM }).start();
  const ai = await new FakeOpenAI({ apiKey: OPENAI_KEY }).start();
  ai.script(scriptedModel);
  const backend = await makeBackend();
  const bot = await startBot({ slackApiUrl: slack.apiUrl, openaiBaseUrl: ai.baseUrl, env: { ...backend.env, ...env } });
  const harness: Harness = {
    slack,
    ai,
    bot,
    backend,
    mention: async (text, options = {}) => {
      const ts = nextMessageTs();
      const channel = options.channel ?? 'C1';
      const event = mentionEvent({
        channel,
        user: options.user ?? 'U1',
        text: mentionText(BOT_USER, text),
        ts,
        thread_ts: options.threadTs,
        files: options.files as never,
      });
      // What Slack holds: the message the event describes (conversations.replies finds it, as it would).
      slack.seedFromEvent(event);
      const result = await postEvent(bot.eventsUrl, SIGNING_SECRET, event, { eventId: options.eventId, retryNum: options.retryNum });
      return { ts, threadTs: options.threadTs ?? ts, status: result.status, eventId: result.eventId };
    },
    waitForReply: (threadTs, pattern, channel = 'C1', timeoutMs = 20_000) =>
      slack.waitFor(
        (fake) => fake.botMessagesIn(channel, threadTs).find((message) => pattern.test(message.text ?? ''))?.text,
        timeoutMs,
      ),
    idle: (options) => waitForIdle({ slack, ai, bots: [bot], botUser: BOT_USER }, options),
  };
  return harness;
}

export async function stopHarness(harness: Harness | undefined): Promise<void> {
  if (harness === undefined) return;
  await harness.bot.stop();
  await Promise.all([harness.slack.close(), harness.ai.close(), harness.backend.close()]);
}
