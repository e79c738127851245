import type { AnyChunk, KnownBlock } from '@slack/types';
import type { WebClient } from '@slack/web-api';
import type { Logger } from '../logger.js';
import { uploadStreams, type UploadOutcome, type UploadSource } from './file-upload.js';
import type { SlackFileRef } from './mention.js';
import { readThreadReplies, type ThreadReply } from './thread-replies.js';

/**
 * One Slack thread, bound once per mention to (client, channel, thread_ts): everything the bot does in a
 * thread goes through this object, so no signature carries the triple and a turn can be tested in process
 * with a recording fake (test/helpers/recording-slack-thread.ts). Web API reference for each call:
 * https://api.slack.com/methods/<method>.
 */
export interface SlackThread {
  readonly channel: string;
  readonly threadTs: string;
  /** The Web API base URL: the bot token may be sent to its host (file downloads), never elsewhere. */
  readonly apiUrl: string;
  /** chat.postMessage in the thread; resolves with the new message's ts. */
  post(message: ThreadMessage): Promise<string | undefined>;
  /** chat.update of one of the bot's messages in the thread. */
  update(ts: string, message: ThreadMessage): Promise<void>;
  /** assistant.threads.setStatus (Slack's "is working…" line); throws where the app type does not allow it. */
  setStatus(status: string): Promise<void>;
  /**
   * agents.sessions.setStatus of this thread's agent session (https://docs.slack.dev/reference/methods/agents.sessions.setStatus):
   * `processing` while a turn runs shows Slack's own Stop control, `active` after. Resolves true when that control
   * is shown: Slack accepted the status without the warning `missing_agent_session_stopped_event_subscription`.
   * Throws when Slack refuses it (not an agent app, feature disabled).
   */
  setSessionStatus(status: 'processing' | 'active', options?: { title?: string }): Promise<boolean>;
  /**
   * chat.startStream (https://docs.slack.dev/reference/methods/chat.startStream): a streamed reply in the thread,
   * started with `chunks` (so every later call sends chunks too); `recipient` is required in channels. Resolves
   * with the streaming message's ts.
   */
  startStream(recipient: StreamRecipient, chunks: AnyChunk[]): Promise<string>;
  /** chat.appendStream (https://docs.slack.dev/reference/methods/chat.appendStream) of chunks. */
  appendStream(ts: string, chunks: AnyChunk[]): Promise<void>;
  /** chat.stopStream (https://docs.slack.dev/reference/methods/chat.stopStream) with the last chunks. */
  stopStream(ts: string, chunks: AnyChunk[]): Promise<void>;
  /** Files streamed into one message (files.getUploadURLExternal, bytes, files.completeUploadExternal). */
  uploadFiles(files: UploadSource[], options?: { initialComment?: string }): Promise<UploadOutcome>;
  /** The files of one message of the thread, read back with conversations.replies ([] when it has none). */
  messageFiles(messageTs: string): Promise<SlackFileRef[]>;
  /** The thread's messages after `after` (all when undefined) up to `upTo` included, earliest first (thread-replies.ts). */
  readReplies(window: { after?: string; upTo: string }): Promise<ThreadReply[]>;
  /** files.info: a file's details (the download URL) when an event left them out. */
  fileInfo(fileId: string): Promise<SlackFileRef | undefined>;
  /** The thread's messages after `ts`, oldest first, at most `limit` (conversations.replies): to find one of the bot's. */
  messagesAfter(ts: string, limit: number): Promise<PostedMessage[]>;
}

/** A message of the thread as conversations.replies gives it back. */
export interface PostedMessage {
  ts: string;
  text?: string;
  blocks?: KnownBlock[];
}

/** Who a streamed reply is for: Slack requires both outside direct messages. */
export interface StreamRecipient {
  userId: string;
  teamId: string;
}

export interface ThreadMessage {
  text: string;
  blocks?: KnownBlock[];
  /** false: no link previews (long answers). */
  unfurlLinks?: false;
}

/** Builds the SlackThread of a mention (its logger carries the thread's fields). */
export type SlackThreadFactory = (channel: string, threadTs: string, logger: Logger) => SlackThread;

export function webSlackThreads(client: WebClient): SlackThreadFactory {
  return (channel, threadTs, logger) => new WebSlackThread(client, channel, threadTs, logger);
}

/** SlackThread over @slack/web-api's WebClient (which waits and retries on 429). */
export class WebSlackThread implements SlackThread {
  constructor(
    private readonly client: WebClient,
    readonly channel: string,
    readonly threadTs: string,
    private readonly logger: Logger,
  ) {}

  get apiUrl(): string {
    return this.client.slackApiUrl;
  }

  async post(message: ThreadMessage): Promise<string | undefined> {
    const response = await this.client.chat.postMessage({
      channel: this.channel,
      thread_ts: this.threadTs,
      text: message.text,
      ...(message.blocks === undefined ? {} : { blocks: message.blocks }),
      ...(message.unfurlLinks === false ? { unfurl_links: false } : {}),
    });
    return response.ts;
  }

  async update(ts: string, message: ThreadMessage): Promise<void> {
    await this.client.chat.update({ channel: this.channel, ts, text: message.text, ...(message.blocks === undefined ? {} : { blocks: message.blocks }) });
  }

  async setStatus(status: string): Promise<void> {
    await this.client.assistant.threads.setStatus({ channel_id: this.channel, thread_ts: this.threadTs, status });
  }

  async setSessionStatus(status: 'processing' | 'active', options: { title?: string } = {}): Promise<boolean> {
    const response = await this.client.agents.sessions.setStatus({
      channel_id: this.channel,
      thread_ts: this.threadTs,
      status,
      ...(options.title === undefined ? {} : { title: options.title }),
    });
    // Without the event subscription Slack shows a spinner instead of a Stop button, and says so in a warning
    // (https://docs.slack.dev/reference/events/agent_session_stopped).
    const warnings = [response.warning ?? '', ...(response.response_metadata?.warnings ?? [])].join(',');
    return !warnings.includes('missing_agent_session_stopped_event_subscription');
  }

  async startStream(recipient: StreamRecipient, chunks: AnyChunk[]): Promise<string> {
    const response = await this.client.chat.startStream({
      channel: this.channel,
      thread_ts: this.threadTs,
      recipient_user_id: recipient.userId,
      recipient_team_id: recipient.teamId,
      task_display_mode: 'timeline',
      chunks,
    });
    if (response.ts === undefined) throw new Error('chat.startStream returned no ts');
    return response.ts;
  }

  async appendStream(ts: string, chunks: AnyChunk[]): Promise<void> {
    await this.client.chat.appendStream({ channel: this.channel, ts, chunks });
  }

  async stopStream(ts: string, chunks: AnyChunk[]): Promise<void> {
    await this.client.chat.stopStream({ channel: this.channel, ts, ...(chunks.length === 0 ? {} : { chunks }) });
  }

  uploadFiles(files: UploadSource[], options: { initialComment?: string } = {}): Promise<UploadOutcome> {
    return uploadStreams({ client: this.client, channel: this.channel, threadTs: this.threadTs, files, initialComment: options.initialComment, logger: this.logger });
  }

  async messageFiles(messageTs: string): Promise<SlackFileRef[]> {
    const answer = await this.client.conversations.replies({
      channel: this.channel,
      ts: this.threadTs,
      oldest: messageTs,
      latest: messageTs,
      inclusive: true,
      limit: 10,
    });
    const message = answer.messages?.find((candidate) => candidate.ts === messageTs);
    return (message?.files ?? []) as SlackFileRef[];
  }

  readReplies(window: { after?: string; upTo: string }): Promise<ThreadReply[]> {
    return readThreadReplies(this.client, { channel: this.channel, threadTs: this.threadTs, ...window });
  }

  async fileInfo(fileId: string): Promise<SlackFileRef | undefined> {
    const answer = await this.client.files.info({ file: fileId });
    return answer.file as SlackFileRef | undefined;
  }

  async messagesAfter(ts: string, limit: number): Promise<PostedMessage[]> {
    // The first page starts with the thread's parent whatever the window: keep only what comes after `ts`.
    const answer = await this.client.conversations.replies({ channel: this.channel, ts: this.threadTs, oldest: ts, limit });
    return ((answer.messages ?? []) as PostedMessage[]).filter((message) => compareTs(message.ts, ts) > 0);
  }
}

/** Slack timestamps compared exactly (seconds, then microseconds; as numbers they would lose digits). */
function compareTs(left: string, right: string): number {
  const [leftSeconds = '', leftMicros = ''] = left.split('.');
  const [rightSeconds = '', rightMicros = ''] = right.split('.');
  return Number(leftSeconds) - Number(rightSeconds) || Number(leftMicros.padEnd(6, '0')) - Number(rightMicros.padEnd(6, '0'));
}
