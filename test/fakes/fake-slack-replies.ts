/**
 * conversations.replies for FakeSlack, with the window and the paging Slack documents
 * (https://docs.slack.dev/reference/methods/conversations.replies), so that a bot asking for the wrong window
 * gets the wrong messages, as it would from Slack:
 * - `ts` names the thread: its parent, or any message in it; a message without replies is a thread of one.
 * - Replies after `oldest` (default 0) and before `latest` (default now) are returned, earliest first; a reply
 *   at exactly `oldest` or `latest` only with `inclusive` (default false; it means nothing without either).
 * - The first page starts with the thread's parent whatever the window (later pages do not repeat it), then
 *   up to `limit` messages in all (default and maximum 1000); `has_more` and `response_metadata.next_cursor`
 *   lead to the next page, which the client asks for with `cursor`.
 */
import type { SlackArgs, SlackMessage } from './fake-slack-messages.js';
import { compareTs } from './fake-slack-messages.js';

const MAX_LIMIT = 1000;
const TS_PATTERN = /^\d+(\.\d+)?$/;

/** The answer to conversations.replies for the thread `threadTs` (its messages, in ts order). */
export function repliesPage(thread: SlackMessage[], threadTs: string, args: SlackArgs): SlackArgs {
  const [parent, ...replies] = thread;
  if (parent === undefined || parent.ts !== threadTs) return { ok: false, error: 'thread_not_found' };
  const oldest = timestamp(args.oldest);
  const latest = timestamp(args.latest);
  if (oldest === null) return { ok: false, error: 'invalid_ts_oldest' };
  if (latest === null) return { ok: false, error: 'invalid_ts_latest' };
  const limit = args.limit === undefined || args.limit === '' ? MAX_LIMIT : Number(args.limit);
  if (!Number.isInteger(limit) || limit < 1) return { ok: false, error: 'invalid_limit' };
  const cursor = args.cursor === undefined || args.cursor === '' ? undefined : decodeCursor(String(args.cursor));
  if (cursor === null) return { ok: false, error: 'invalid_cursor' };

  const inclusive = isTrue(args.inclusive);
  const inWindow = replies.filter((reply) => {
    const afterOldest = oldest === undefined || compareTs(reply.ts, oldest) > 0 || (inclusive && compareTs(reply.ts, oldest) === 0);
    const beforeLatest = latest === undefined || compareTs(reply.ts, latest) < 0 || (inclusive && compareTs(reply.ts, latest) === 0);
    return afterOldest && beforeLatest && (cursor === undefined || compareTs(reply.ts, cursor) >= 0);
  });
  const candidates = cursor === undefined ? [parent, ...inWindow] : inWindow;
  const page = candidates.slice(0, Math.min(limit, MAX_LIMIT));
  const next = candidates[page.length];
  return {
    ok: true,
    messages: page.map((message) => ({ type: 'message', ...message })),
    has_more: next !== undefined,
    ...(next === undefined ? {} : { response_metadata: { next_cursor: encodeCursor(next.ts) } }),
  };
}

/** undefined when absent, null when malformed (Slack answers invalid_ts_oldest / invalid_ts_latest). */
function timestamp(value: unknown): string | undefined | null {
  if (value === undefined || value === '') return undefined;
  const text = String(value);
  return TS_PATTERN.test(text) ? text : null;
}

function isTrue(value: unknown): boolean {
  return value === true || value === 1 || value === 'true' || value === '1';
}

/** Slack's reply cursors are base64 of `next_ts:<ts>`; anything else is invalid_cursor. */
function encodeCursor(ts: string): string {
  return Buffer.from(`next_ts:${ts}`).toString('base64');
}

function decodeCursor(cursor: string): string | null {
  const match = /^next_ts:(\d+\.\d+)$/.exec(Buffer.from(cursor, 'base64').toString('utf8'));
  return match === null ? null : match[1]!;
}
