import type { FakeOpenAI } from '../fakes/fake-openai.js';
import type { FakeSlack } from '../fakes/fake-slack.js';
import { SIGNING_SECRET, type BotProcess, type LogLine } from './bot-process.js';
import { mentionEvent, mentionText, nextMessageTs, postEvent } from './slack-events.js';
import { unfinishedStatusMessages } from './status-blocks.js';

/**
 * "Nothing happened" checks wait for the bot to be idle instead of sleeping. The bot logs (at DEBUG, which the
 * test bots run at) one `event routed` line for every event its listeners receive, accepted or ignored with the
 * reason, and one `mention done` line for every accepted mention once it is finished, on whichever instance
 * finished it (a mention queued on one instance can run on another). Idleness is counted, in two steps:
 *  1. a barrier per bot process: an empty mention in a fresh thread, which the bot answers with its help text
 *     (or, for a user it does not serve, a refusal) without the model. Events are routed in arrival order, so
 *     once that answer is in, every event posted to that bot before it has its `event routed` line;
 *  2. across the bots, as many `mention done` lines as accepted events, and no status message still showing its
 *     Stop button (the final edit of every turn has landed) and no stream still open.
 */

export interface IdleTarget {
  slack: FakeSlack;
  ai: FakeOpenAI;
  /** The bot processes sharing the work (instances of one deployment): one barrier each, counts summed. */
  bots: BotProcess[];
  /** Bots whose logs count besides (an instance killed earlier: a mention it accepted is finished by another). */
  gone?: BotProcess[];
  botUser: string;
}

export interface IdleOptions {
  /** Where the barrier's empty mention is posted (default C1, from U1). */
  channel?: string;
  user?: string;
  /** Give up (and fail) after this long (default 20 s). */
  timeoutMs?: number;
}

const POLL_MS = 25;

/** Resolves with the (first) barrier's thread: its help reply is the one message the wait itself caused there. */
export async function waitForIdle(target: IdleTarget, options: IdleOptions = {}): Promise<{ barrierTs: string }> {
  const { channel = 'C1', user = 'U1', timeoutMs = 20_000 } = options;
  const deadline = Date.now() + timeoutMs;
  const barriers = target.bots.map(() => nextMessageTs());
  await Promise.all(
    target.bots.map((bot, index) => {
      const barrier = mentionEvent({ channel, user, text: mentionText(target.botUser), ts: barriers[index]! });
      // The message exists on Slack's side, as a real one does (the bot reads the thread back).
      target.slack.seedFromEvent(barrier);
      return postEvent(bot.eventsUrl, SIGNING_SECRET, barrier);
    }),
  );
  await target.slack.waitFor((slack) => barriers.every((ts) => slack.botMessagesIn(channel, ts).length > 0), timeoutMs);

  let settledOnce = false;
  for (;;) {
    const counts = mentionCounts([...target.bots, ...(target.gone ?? [])]);
    const settled = counts.accepted === counts.done && unfinishedStatusMessages(target.slack).length === 0;
    // Twice in a row, one poll apart: a line being written as the first look was taken is seen by the second.
    if (settled && settledOnce) return { barrierTs: barriers[0]! };
    settledOnce = settled;
    if (Date.now() > deadline) {
      const unfinished = unfinishedStatusMessages(target.slack).map((message) => `${message.channel} ${message.thread_ts ?? message.ts}`);
      throw new Error(
        `the bot did not go idle within ${timeoutMs} ms (mentions accepted ${counts.accepted}, done ${counts.done}; turns still running: ${unfinished.join(', ') || 'none'})\n${target.slack.dump()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** Accepted events and finished mentions, summed over the bots' logs. */
function mentionCounts(bots: BotProcess[]): { accepted: number; done: number } {
  const lines: LogLine[] = bots.flatMap((bot) => bot.logLines());
  return {
    accepted: lines.filter((line) => line.message === 'event routed' && line.outcome === 'accepted').length,
    done: lines.filter((line) => line.message === 'mention done').length,
  };
}
