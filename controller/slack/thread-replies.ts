import type { WebClient } from '@slack/web-api';
import type { SlackFileRef } from './mention.js';

/**
 * Reading a thread back with conversations.replies (https://docs.slack.dev/reference/methods/conversations.replies),
 * for the catch-up before each turn: what people wrote and shared since the bot's last turn.
 *
 * - The window is `oldest` = the last message already seen, `latest` = the mention, `inclusive` so the mention
 *   itself comes back (its files, when the event left them out); the last seen message is dropped here.
 * - The first page always starts with the thread's parent whatever the window, so every message is filtered by
 *   its ts again rather than trusted to be inside the window.
 * - `limit` is explicit: Slack's documentation and the SDK disagree on the default (1000 and 100).
 * - Paging follows `response_metadata.next_cursor`, at most MAX_PAGES pages: a thread that grew by more than
 *   that since the last turn is read from its oldest unseen message on (the caller notices when the mention
 *   itself is then missing, and reads its files on their own).
 */

export interface ThreadReply {
  ts: string;
  /** The author (absent for some bot and system messages). */
  user?: string;
  /** Set on messages posted by an app or a bot (the bot's own included). */
  botId?: string;
  text: string;
  files: SlackFileRef[];
}

const PAGE_LIMIT = 200;
const MAX_PAGES = 5;

export async function readThreadReplies(
  client: WebClient,
  window: { channel: string; threadTs: string; after?: string; upTo: string },
): Promise<ThreadReply[]> {
  const replies: ThreadReply[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const answer = await client.conversations.replies({
      channel: window.channel,
      ts: window.threadTs,
      latest: window.upTo,
      ...(window.after === undefined ? {} : { oldest: window.after }),
      inclusive: true,
      limit: PAGE_LIMIT,
      ...(cursor === undefined ? {} : { cursor }),
    });
    for (const message of answer.messages ?? []) {
      if (message.ts === undefined || !inWindow(message.ts, window.after, window.upTo)) continue;
      if (replies.some((seen) => seen.ts === message.ts)) continue;
      replies.push({
        ts: message.ts,
        ...(message.user === undefined ? {} : { user: message.user }),
        ...(message.bot_id === undefined && message.app_id === undefined ? {} : { botId: message.bot_id ?? message.app_id ?? '' }),
        text: message.text ?? '',
        files: (message.files ?? []) as SlackFileRef[],
      });
    }
    cursor = answer.response_metadata?.next_cursor;
    if (cursor === undefined || cursor === '') break;
  }
  return replies.sort((left, right) => compareTs(left.ts, right.ts));
}

function inWindow(ts: string, after: string | undefined, upTo: string): boolean {
  return (after === undefined || compareTs(ts, after) > 0) && compareTs(ts, upTo) <= 0;
}

/** Slack timestamps compared as numbers of microseconds (`1700000000.000100`), not as floats or strings. */
export function compareTs(left: string, right: string): number {
  const micros = (ts: string) => {
    const [seconds = '0', fraction = ''] = ts.split('.');
    return BigInt(/^\d+$/.test(seconds) ? seconds : '0') * 1_000_000n + BigInt(fraction.padEnd(6, '0').slice(0, 6).replace(/\D/g, '0') || '0');
  };
  const difference = micros(left) - micros(right);
  return difference < 0n ? -1 : difference > 0n ? 1 : 0;
}
