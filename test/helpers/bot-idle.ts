import type { FakeOpenAI } from '../fakes/fake-openai.js';
import type { FakeSlack } from '../fakes/fake-slack.js';
import { SIGNING_SECRET, type BotProcess } from './bot-process.js';
import { mentionEvent, mentionText, nextMessageTs, postEvent } from './slack-events.js';
import { unfinishedStatusMessages } from './status-blocks.js';

/**
 * "Nothing happened" checks wait for the bot to be idle instead of sleeping. The bot says nothing when it
 * ignores an event (and Bolt acknowledges an event before its listener runs), so idleness is decided from
 * the outside, in three steps:
 *  1. a barrier: an empty mention in a fresh thread, which the bot answers with its help text (or, for a
 *     user it does not serve, a refusal) without the model. Events are routed in arrival order, so once
 *     that answer is in, every event posted before it has been accepted or ignored;
 *  2. every turn that started has ended: no status message still shows its Stop button, no stream is still open;
 *  3. the fakes (Slack calls, model requests) and the bot's log stay unchanged for `quietMs`: a queued turn
 *     starts as soon as the one before it ends, so a quiet moment with every status message finished means
 *     nothing is waiting either.
 * The controller has no "event handled" log line to count instead (see docs/testing.md).
 */

export interface IdleTarget {
  slack: FakeSlack;
  ai: FakeOpenAI;
  bot: BotProcess;
  botUser: string;
}

export interface IdleOptions {
  /** Where the barrier's empty mention is posted (default C1, from U1). */
  channel?: string;
  user?: string;
  /** Give up (and fail) after this long (default 20 s). */
  timeoutMs?: number;
  /** How long nothing may change before the bot counts as idle (default 150 ms). */
  quietMs?: number;
}

const POLL_MS = 25;

/** Resolves with the barrier's thread (its help reply is the one message the wait itself caused). */
export async function waitForIdle(target: IdleTarget, options: IdleOptions = {}): Promise<{ barrierTs: string }> {
  const { channel = 'C1', user = 'U1', timeoutMs = 20_000, quietMs = 150 } = options;
  const deadline = Date.now() + timeoutMs;
  const barrierTs = nextMessageTs();
  const barrier = mentionEvent({ channel, user, text: mentionText(target.botUser), ts: barrierTs });
  target.slack.seedFromEvent(barrier);
  await postEvent(target.bot.eventsUrl, SIGNING_SECRET, barrier);
  await target.slack.waitFor((slack) => slack.botMessagesIn(channel, barrierTs).length > 0, timeoutMs);

  let seen = activity(target);
  let quietSince = Date.now();
  for (;;) {
    const now = activity(target);
    if (now !== seen) {
      seen = now;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= quietMs && unfinishedStatusMessages(target.slack).length === 0 && target.slack.streams.open.length === 0) {
      return { barrierTs };
    }
    if (Date.now() > deadline) {
      const unfinished = unfinishedStatusMessages(target.slack).map((message) => `${message.channel} ${message.thread_ts ?? message.ts}`);
      throw new Error(`the bot did not go idle within ${timeoutMs} ms (turns still running: ${unfinished.join(', ') || 'none'})\n${target.slack.dump()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** Everything the bot can be seen doing, as one comparable value. */
function activity({ slack, ai, bot }: IdleTarget): string {
  const aborted = ai.requests.filter((request) => request.aborted).length;
  return [slack.calls.length, slack.rateLimited.length, slack.uploads.length, ai.requests.length, aborted, bot.output().length].join(':');
}
