/**
 * Real signed Slack requests for tests: Events API callbacks, url_verification and interactive payloads, signed
 * with the v0 HMAC-SHA256 scheme Bolt verifies (`v0:<timestamp>:<raw body>`).
 */
import { createHmac, randomUUID } from 'node:crypto';
import type { SlackFile } from '../fakes/fake-slack.js';

export interface SignOptions {
  /** Seconds since the epoch; defaults to now (Bolt refuses requests older than 5 minutes). */
  timestamp?: number;
  retryNum?: number;
  retryReason?: string;
  contentType?: string;
}

export interface SignedRequest {
  headers: Record<string, string>;
  body: string;
}

export function signature(signingSecret: string, timestamp: number, body: string): string {
  return `v0=${createHmac('sha256', signingSecret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

export function signedRequest(signingSecret: string, body: string, options: SignOptions = {}): SignedRequest {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': options.contentType ?? 'application/json',
    'x-slack-request-timestamp': String(timestamp),
    'x-slack-signature': signature(signingSecret, timestamp, body),
  };
  if (options.retryNum !== undefined) headers['x-slack-retry-num'] = String(options.retryNum);
  if (options.retryReason !== undefined) headers['x-slack-retry-reason'] = options.retryReason;
  return { headers, body };
}

export interface PostResult {
  status: number;
  body: string;
  elapsedMs: number;
}

export async function postSigned(url: string, signingSecret: string, body: string, options: SignOptions = {}): Promise<PostResult> {
  const request = signedRequest(signingSecret, body, options);
  const started = performance.now();
  const response = await fetch(url, { method: 'POST', headers: request.headers, body: request.body });
  const text = await response.text();
  return { status: response.status, body: text, elapsedMs: performance.now() - started };
}

export interface EventOptions extends SignOptions {
  botUserId?: string;
  teamId?: string;
  apiAppId?: string;
  /** Reuse an event_id to simulate Slack redelivering the same event. */
  eventId?: string;
  eventTime?: number;
}

export interface EventPostResult extends PostResult {
  eventId: string;
}

/** Wraps an event in an `event_callback` envelope, signs it and posts it. */
export async function postEvent(
  url: string,
  signingSecret: string,
  event: Record<string, unknown>,
  options: EventOptions = {},
): Promise<EventPostResult> {
  const eventId = options.eventId ?? `Ev${randomUUID().replace(/-/g, '').slice(0, 12).toUpperCase()}`;
  const teamId = options.teamId ?? (typeof event.team === 'string' ? event.team : 'T1');
  const envelope = {
    token: 'legacy-verification-token',
    team_id: teamId,
    api_app_id: options.apiAppId ?? 'A1',
    event,
    type: 'event_callback',
    event_id: eventId,
    event_time: options.eventTime ?? Math.floor(Date.now() / 1000),
    authorizations: [{ enterprise_id: null, team_id: teamId, user_id: options.botUserId ?? 'UBOT', is_bot: true, is_enterprise_install: false }],
    is_ext_shared_channel: false,
  };
  const result = await postSigned(url, signingSecret, JSON.stringify(envelope), options);
  return { ...result, eventId };
}

export async function postUrlVerification(url: string, signingSecret: string, challenge: string, options: SignOptions = {}): Promise<PostResult> {
  const body = JSON.stringify({ token: 'legacy-verification-token', challenge, type: 'url_verification' });
  return postSigned(url, signingSecret, body, options);
}

let lastTsMicros = 0n;

/** A fresh message timestamp (current time, strictly increasing within this process). */
export function nextMessageTs(): string {
  const now = BigInt(Date.now()) * 1000n;
  lastTsMicros = now > lastTsMicros ? now : lastTsMicros + 1n;
  return `${lastTsMicros / 1_000_000n}.${String(lastTsMicros % 1_000_000n).padStart(6, '0')}`;
}

/** `<@UBOT> text`: the way Slack writes a mention inside message text. */
export function mentionText(botUserId: string, text = ''): string {
  return text ? `<@${botUserId}> ${text}` : `<@${botUserId}>`;
}

export interface MentionEventInput {
  channel: string;
  user: string;
  /** The full message text, mention included, e.g. `<@UBOT> hello`. */
  text: string;
  ts?: string;
  thread_ts?: string;
  files?: SlackFile[];
  team?: string;
}

export function mentionEvent(input: MentionEventInput): Record<string, unknown> {
  const ts = input.ts ?? nextMessageTs();
  const event: Record<string, unknown> = {
    type: 'app_mention',
    user: input.user,
    text: input.text,
    ts,
    channel: input.channel,
    event_ts: ts,
    team: input.team ?? 'T1',
    client_msg_id: randomUUID(),
    blocks: [{ type: 'rich_text', block_id: 'b1', elements: [{ type: 'rich_text_section', elements: [{ type: 'text', text: input.text }] }] }],
  };
  if (input.thread_ts !== undefined) event.thread_ts = input.thread_ts;
  if (input.files !== undefined) {
    event.files = input.files;
    event.upload = false;
  }
  return event;
}

export interface MessageEventInput extends MentionEventInput {
  bot_id?: string;
  subtype?: string;
  channel_type?: 'channel' | 'group' | 'im' | 'mpim';
}

/** A plain `message` event (a reply without a mention, or a bot's own message when `bot_id` is set). */
export function messageEvent(input: MessageEventInput): Record<string, unknown> {
  const event = mentionEvent(input);
  event.type = 'message';
  event.channel_type = input.channel_type ?? 'channel';
  if (input.bot_id !== undefined) event.bot_id = input.bot_id;
  if (input.subtype !== undefined) event.subtype = input.subtype;
  if (input.files !== undefined && input.subtype === undefined) event.subtype = 'file_share';
  return event;
}

export interface BlockActionInput {
  actionId: string;
  value?: string;
  blockId?: string;
  user: string;
  channel: string;
  /** ts of the message carrying the button. */
  messageTs: string;
  threadTs?: string;
  teamId?: string;
  responseUrl?: string;
}

export function blockActionPayload(input: BlockActionInput): Record<string, unknown> {
  const teamId = input.teamId ?? 'T1';
  return {
    type: 'block_actions',
    user: { id: input.user, username: `user-${input.user.toLowerCase()}`, name: `user-${input.user.toLowerCase()}`, team_id: teamId },
    api_app_id: 'A1',
    token: 'legacy-verification-token',
    container: {
      type: 'message',
      message_ts: input.messageTs,
      channel_id: input.channel,
      is_ephemeral: false,
      ...(input.threadTs ? { thread_ts: input.threadTs } : {}),
    },
    trigger_id: `${Date.now()}.trigger`,
    team: { id: teamId, domain: 'fake' },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: input.channel, name: 'general' },
    message: {
      type: 'message',
      ts: input.messageTs,
      ...(input.threadTs ? { thread_ts: input.threadTs } : {}),
      text: '',
    },
    state: { values: {} },
    response_url: input.responseUrl ?? 'http://127.0.0.1:9/response-url-not-set',
    actions: [
      {
        type: 'button',
        action_id: input.actionId,
        block_id: input.blockId ?? 'b1',
        value: input.value,
        text: { type: 'plain_text', text: 'Stop', emoji: true },
        action_ts: `${Math.floor(Date.now() / 1000)}.000001`,
      },
    ],
  };
}

/** Posts a signed interactive payload (`payload=<json>`, form-encoded), as Slack does for a button click. */
export async function postBlockAction(url: string, signingSecret: string, input: BlockActionInput, options: SignOptions = {}): Promise<PostResult> {
  const body = new URLSearchParams({ payload: JSON.stringify(blockActionPayload(input)) }).toString();
  return postSigned(url, signingSecret, body, { ...options, contentType: 'application/x-www-form-urlencoded' });
}

/**
 * `agent_session_stopped` (https://docs.slack.dev/reference/events/agent_session_stopped): someone pressed Slack's own
 * Stop control of the thread's agent session; `streaming_message_ts` lists the app's streams Slack stopped. The
 * event has no team: it is on the envelope (postEvent's `teamId`).
 */
export function agentSessionStoppedEvent(input: { channel: string; user: string; threadTs: string; streamingMessageTs?: string[] }): Record<string, unknown> {
  const eventTs = nextMessageTs();
  return {
    type: 'agent_session_stopped',
    channel: input.channel,
    user: input.user,
    thread_ts: input.threadTs,
    streaming_message_ts: input.streamingMessageTs ?? [],
    event_ts: eventTs,
  };
}

/**
 * What Slack sends about a thread's parent when a reply arrives: a hidden `message_changed` whose `message` is the
 * parent with its new `reply_count` (https://docs.slack.dev/reference/events/message/message_changed), or the
 * `message_replied` form (https://docs.slack.dev/reference/events/message/message_replied), which Slack delivers
 * without its subtype.
 */
export function parentChangedEvent(input: { channel: string; parent: { ts: string; user: string; text: string }; replyCount: number; form?: 'message_changed' | 'message_replied' }): Record<string, unknown> {
  const eventTs = nextMessageTs();
  const message = { type: 'message', ...input.parent, thread_ts: input.parent.ts, reply_count: input.replyCount, reply_users_count: 1, latest_reply: eventTs, reply_users: [input.parent.user] };
  const event: Record<string, unknown> = { type: 'message', hidden: true, channel: input.channel, channel_type: 'channel', ts: eventTs, event_ts: eventTs, message };
  if ((input.form ?? 'message_changed') === 'message_changed') {
    event.subtype = 'message_changed';
    event.previous_message = { type: 'message', ...input.parent };
  }
  return event;
}
