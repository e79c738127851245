/**
 * The message half of FakeSlack: what each channel holds (posts with updates applied, deletions removed,
 * reactions), Slack-style timestamps, and the wire parsing and limits of Web API calls.
 */
import { tableProblem } from './fake-slack-blocks.js';
import type { SlackFile } from './fake-slack-files.js';

export type SlackArgs = Record<string, unknown>;

export interface SlackMessage {
  channel: string;
  ts: string;
  thread_ts?: string;
  user?: string;
  bot_id?: string;
  text: string;
  blocks?: unknown[];
  files?: SlackFile[];
  reactions?: Array<{ name: string; users: string[]; count: number }>;
  edited?: { user: string; ts: string };
}

export interface SeedMessage {
  channel: string;
  ts: string;
  thread_ts?: string;
  user: string;
  text: string;
  files?: SlackFile[];
}

/** Errors that mean the bot sent something Slack would refuse (too long, malformed): recorded in `unexpected`. */
export const SUSPICIOUS_ERRORS = new Set([
  'msg_too_long',
  'invalid_blocks',
  'no_text',
  'invalid_arguments',
  'channel_not_found',
  'missing_recipient_user_id',
  'missing_recipient_team_id',
  'streaming_mode_mismatch',
  'invalid_chunks',
  'cannot_provide_both_markdown_text_and_chunks',
  'markdown_text_or_chunks_required',
  'invalid_status',
  'thread_ts_required',
]);

/** Slack's documented limits, enforced so that tests catch messages the real Slack would refuse. */
const MAX_TEXT_CHARS = 40_000;
const MAX_BLOCKS = 50;
const MAX_SECTION_TEXT_CHARS = 3000;

/** Form fields that the web-api client serialises as JSON strings. */
const JSON_FIELDS = new Set(['blocks', 'attachments', 'files', 'metadata', 'loading_messages', 'prompts', 'file_ids', 'chunks']);

export class SlackMessageStore {
  private readonly messages = new Map<string, SlackMessage[]>();
  /** The latest message timestamp seen, in microseconds: new messages always come after it. */
  private lastTsMicros = 1700000000_000099n;

  constructor(private readonly changed: () => void) {}

  store(message: SlackMessage): void {
    const micros = tsToMicros(message.ts);
    if (micros > this.lastTsMicros) this.lastTsMicros = micros;
    const list = this.messages.get(message.channel) ?? [];
    list.push(message);
    this.messages.set(message.channel, list);
    this.changed();
  }

  find(channel: string, ts: string): SlackMessage | undefined {
    return this.messages.get(channel)?.find((message) => message.ts === ts);
  }

  remove(channel: string, ts: string): boolean {
    const list = this.messages.get(channel) ?? [];
    const index = list.findIndex((message) => message.ts === ts);
    if (index === -1) return false;
    list.splice(index, 1);
    this.changed();
    return true;
  }

  /** The messages of a thread: parent first, in timestamp order. */
  thread(channel: string, threadTs: string): SlackMessage[] {
    return (this.messages.get(channel) ?? [])
      .filter((message) => message.ts === threadTs || message.thread_ts === threadTs)
      .sort((left, right) => compareTs(left.ts, right.ts));
  }

  /** Unique, increasing message timestamps: 1700000000.000100, 1700000000.000101, ... (after any seeded one). */
  nextTs(): string {
    this.lastTsMicros += 1n;
    const seconds = this.lastTsMicros / 1_000_000n;
    const fraction = this.lastTsMicros % 1_000_000n;
    return `${seconds}.${String(fraction).padStart(6, '0')}`;
  }

  react(channel: string, ts: string, name: string, user: string, action: 'add' | 'remove'): SlackArgs {
    const message = this.find(channel, ts);
    if (!message) return { ok: false, error: 'message_not_found' };
    message.reactions ??= [];
    const reaction = message.reactions.find((entry) => entry.name === name);
    const has = reaction?.users.includes(user) ?? false;
    if (action === 'add') {
      if (has) return { ok: false, error: 'already_reacted' };
      if (reaction) reaction.users.push(user);
      else message.reactions.push({ name, users: [user], count: 0 });
    } else {
      if (!has || !reaction) return { ok: false, error: 'no_reaction' };
      reaction.users = reaction.users.filter((candidate) => candidate !== user);
    }
    message.reactions = message.reactions.filter((entry) => entry.users.length > 0);
    for (const entry of message.reactions) entry.count = entry.users.length;
    return { ok: true };
  }
}

export function messageLimitError(args: SlackArgs): string | undefined {
  const text = args.text ?? args.markdown_text;
  if (typeof text === 'string' && text.length > MAX_TEXT_CHARS) return 'msg_too_long';
  if (args.blocks === undefined) return undefined;
  const blocks = args.blocks;
  if (!Array.isArray(blocks) || blocks.length > MAX_BLOCKS) return 'invalid_blocks';
  for (const block of blocks as Array<{ type?: string; text?: { text?: unknown } }>) {
    if (typeof block !== 'object' || block === null || typeof block.type !== 'string') return 'invalid_blocks';
    const blockText = block.text?.text;
    if (block.type === 'section' && typeof blockText === 'string' && blockText.length > MAX_SECTION_TEXT_CHARS) return 'invalid_blocks';
  }
  return tableProblem(blocks);
}

export function parseArgs(raw: string, contentType: string): SlackArgs {
  if (contentType.includes('application/json')) return (parseJsonOr(raw) as SlackArgs | undefined) ?? {};
  const args: SlackArgs = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    args[key] = JSON_FIELDS.has(key) ? parseJsonOr(value) : value;
  }
  return args;
}

export function parseJsonOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function tsToMicros(ts: string): bigint {
  const [seconds = '0', fraction = ''] = ts.split('.');
  if (!/^\d+$/.test(seconds) || !/^\d*$/.test(fraction)) return 0n;
  return BigInt(seconds) * 1_000_000n + BigInt(fraction.padEnd(6, '0').slice(0, 6) || '0');
}

export function compareTs(left: string, right: string): number {
  const difference = tsToMicros(left) - tsToMicros(right);
  return difference < 0n ? -1 : difference > 0n ? 1 : 0;
}

/** A users.info user object (https://docs.slack.dev/reference/methods/users.info). */
export function fakeUser(userId: string, teamId: string, botUserId: string): SlackArgs {
  const name = `user-${userId.toLowerCase()}`;
  return {
    id: userId,
    team_id: teamId,
    name,
    real_name: `User ${userId}`,
    is_bot: userId === botUserId,
    is_admin: false,
    tz: 'Asia/Tokyo',
    profile: { display_name: name, real_name: `User ${userId}` },
  };
}
