import { EventEmitter } from 'node:events';
import type { AnyChunk, KnownBlock } from '@slack/types';
import type { UploadOutcome, UploadSource } from '../../controller/slack/file-upload.js';
import type { SlackFileRef } from '../../controller/slack/mention.js';
import type { PostedMessage, SlackThread, SlackThreadFactory, StreamRecipient, ThreadMessage } from '../../controller/slack/slack-thread.js';
import { STOP_ACTION_ID } from '../../controller/slack/status-message.js';
import { compareTs, type ThreadReply } from '../../controller/slack/thread-replies.js';
import { tableProblem } from '../fakes/fake-slack-blocks.js';
import { FakeStreams, type Args } from '../fakes/fake-slack-streams.js';

/**
 * A SlackThread that records what the bot does in one thread, for in-process tests of the turn (no HTTP).
 * Strict like Slack: an update of a message that does not exist, a message without text, a text over 40,000
 * characters, a section over 3,000 characters or a table over its limits is refused with Slack's error code;
 * streams and agent session statuses follow Slack's rules (test/fakes/fake-slack-streams.ts). `waitFor` resolves
 * when the thread reaches a state (no sleeping in tests).
 */

export interface RecordedMessage {
  ts: string;
  text: string;
  blocks?: KnownBlock[];
  unfurlLinks?: false;
  /** How many times chat.update changed it. */
  edits: number;
}

export interface RecordedUpload {
  title: string;
  filename: string;
  content: Buffer;
  initialComment?: string;
}

export class RecordingSlackThread implements SlackThread {
  readonly apiUrl: string;
  /**
   * Every call, in order: `post`, `update`, `setStatus`, `setSessionStatus`, `startStream`, `appendStream`,
   * `stopStream`, `uploadFile`, `uploadFiles`, `messageFiles`, `readReplies`, `fileInfo`, `messagesAfter`.
   */
  readonly calls: Array<{ method: string; args: unknown }> = [];
  readonly messages: RecordedMessage[] = [];
  /** Statuses set with setStatus (assistant.threads.setStatus), in order. */
  readonly statuses: string[] = [];
  readonly uploads: RecordedUpload[] = [];
  /** assistant.threads.setStatus is refused (an app type that may not use it). */
  setStatusRefused = false;
  /** Files Slack has on messages of this thread (conversations.replies) and by id (files.info). */
  readonly filesOfMessage = new Map<string, SlackFileRef[]>();
  readonly fileDetails = new Map<string, SlackFileRef>();
  /** What conversations.replies returns for this thread (parent first): other people's messages and shares. */
  readonly replies: ThreadReply[] = [];
  /** Streams and agent session statuses, with Slack's rules (start errors, expiry, Slack's Stop: see FakeStreams). */
  readonly streams = new FakeStreams(() => this.nextTs(), () => this.changed());
  private readonly changes = new EventEmitter();
  private counter = 0;

  constructor(
    readonly channel = 'C1',
    readonly threadTs = '1700000000.000100',
    options: { apiUrl?: string } = {},
  ) {
    this.apiUrl = options.apiUrl ?? 'https://slack.com/api/';
    this.changes.setMaxListeners(0);
  }

  /** Current texts of the thread's messages, in order. */
  get texts(): string[] {
    return this.messages.map((message) => message.text);
  }

  async post(message: ThreadMessage): Promise<string | undefined> {
    this.record('post', message);
    checkMessage(message);
    const ts = this.nextTs();
    this.messages.push({ ts, text: message.text, ...(message.blocks === undefined ? {} : { blocks: message.blocks }), ...(message.unfurlLinks === undefined ? {} : { unfurlLinks: message.unfurlLinks }), edits: 0 });
    this.changed();
    return ts;
  }

  async update(ts: string, message: ThreadMessage): Promise<void> {
    this.record('update', { ts, ...message });
    const existing = this.messages.find((candidate) => candidate.ts === ts);
    if (existing === undefined) throw new Error('message_not_found');
    checkMessage(message);
    existing.text = message.text;
    if (message.blocks === undefined) delete existing.blocks;
    else existing.blocks = message.blocks;
    existing.edits += 1;
    this.changed();
  }

  async setStatus(status: string): Promise<void> {
    this.record('setStatus', status);
    if (this.setStatusRefused) throw new Error('not_allowed_token_type');
    this.statuses.push(status);
    this.changed();
  }

  async setSessionStatus(status: 'processing' | 'active', options: { title?: string } = {}): Promise<boolean> {
    this.record('setSessionStatus', { status, ...options });
    const answer = this.streams.setSessionStatus({ channel_id: this.channel, thread_ts: this.threadTs, status, ...options });
    if (!answer.ok) throw platformError(String(answer.error));
    return answer.warning === undefined;
  }

  async startStream(recipient: StreamRecipient, chunks: AnyChunk[]): Promise<string> {
    this.record('startStream', { recipient, chunks });
    const args = { channel: this.channel, thread_ts: this.threadTs, recipient_user_id: recipient.userId, recipient_team_id: recipient.teamId, chunks };
    return String(this.answer(this.streams.start(args)).ts);
  }

  async appendStream(ts: string, chunks: AnyChunk[]): Promise<void> {
    this.record('appendStream', { ts, chunks });
    this.answer(this.streams.append({ channel: this.channel, ts, chunks }));
  }

  async stopStream(ts: string, chunks: AnyChunk[]): Promise<void> {
    this.record('stopStream', { ts, chunks });
    this.answer(this.streams.stop({ channel: this.channel, ts, ...(chunks.length === 0 ? {} : { chunks }) }));
  }

  /** The markdown of the thread's streams, in order (what the streamed replies show). */
  get streamedText(): string {
    return this.streams.streams.map((stream) => stream.markdown).join('');
  }

  async uploadFiles(files: UploadSource[], options: { initialComment?: string } = {}): Promise<UploadOutcome> {
    this.record('uploadFiles', { titles: files.map((file) => file.title), ...options });
    const failed = new Map<string, string>();
    const posted: string[] = [];
    for (const file of files) {
      const chunks: Buffer[] = [];
      for await (const chunk of await file.open()) chunks.push(Buffer.from(chunk as Buffer));
      const content = Buffer.concat(chunks);
      // Slack's upload URL refuses bytes that do not match the announced length.
      if (content.length !== file.size) {
        failed.set(file.title, 'the upload failed');
        continue;
      }
      this.uploads.push({ title: file.title, filename: file.filename, content, ...(posted.length === 0 && options.initialComment !== undefined ? { initialComment: options.initialComment } : {}) });
      posted.push(file.title);
    }
    this.changed();
    return { posted, failed };
  }

  async messageFiles(messageTs: string): Promise<SlackFileRef[]> {
    this.record('messageFiles', messageTs);
    return this.filesOfMessage.get(messageTs) ?? [];
  }

  async readReplies(window: { after?: string; upTo: string }): Promise<ThreadReply[]> {
    this.record('readReplies', window);
    return this.replies.filter((reply) => (window.after === undefined || compareTs(reply.ts, window.after) > 0) && compareTs(reply.ts, window.upTo) <= 0);
  }

  async fileInfo(fileId: string): Promise<SlackFileRef | undefined> {
    this.record('fileInfo', fileId);
    return this.fileDetails.get(fileId);
  }

  async messagesAfter(ts: string, limit: number): Promise<PostedMessage[]> {
    this.record('messagesAfter', { ts, limit });
    const exact = (value: string) => {
      const [seconds = '0', micros = ''] = value.split('.');
      return BigInt(seconds) * 1_000_000n + BigInt(micros.padEnd(6, '0') || '0');
    };
    const after = this.messages.filter((message) => exact(message.ts) > exact(ts));
    return after.slice(0, limit).map((message) => ({ ts: message.ts, text: message.text, ...(message.blocks === undefined ? {} : { blocks: message.blocks }) }));
  }

  /** Resolves with the predicate's first truthy value; rejects with the thread's texts after `timeoutMs`. */
  waitFor<T>(predicate: (thread: this) => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const value = predicate(this);
        if (!value) return false;
        cleanup();
        resolve(value);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`RecordingSlackThread.waitFor timed out; messages: ${JSON.stringify(this.texts)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.changes.off('change', check);
      };
      if (!check()) this.changes.on('change', check);
    });
  }

  /** After the thread's own ts, as Slack's replies are. */
  private nextTs(): string {
    const [seconds = '0', micros = '0'] = this.threadTs.split('.');
    return `${seconds}.${String(Number(micros) + ++this.counter).padStart(6, '0')}`;
  }

  private answer(answer: Args): Args {
    if (answer.ok !== true) throw platformError(String(answer.error));
    return answer;
  }

  private record(method: string, args: unknown): void {
    this.calls.push({ method, args });
    this.changed();
  }

  private changed(): void {
    this.changes.emit('change');
  }
}

/** One RecordingSlackThread per (channel, thread_ts), made on first use: the Bot's SlackThreadFactory in tests. */
export class RecordingSlackThreads {
  private readonly threads = new Map<string, RecordingSlackThread>();
  readonly factory: SlackThreadFactory = (channel, threadTs) => this.thread(channel, threadTs);

  thread(channel: string, threadTs: string): RecordingSlackThread {
    const key = `${channel}:${threadTs}`;
    let thread = this.threads.get(key);
    if (thread === undefined) {
      thread = new RecordingSlackThread(channel, threadTs);
      this.threads.set(key, thread);
    }
    return thread;
  }
}

/** Slack's own refusals (https://api.slack.com/methods/chat.postMessage#errors, block kit limits). */
function checkMessage(message: ThreadMessage): void {
  if (message.text.trim() === '' && (message.blocks === undefined || message.blocks.length === 0)) throw new Error('no_text');
  if (message.text.length > 40_000) throw new Error('msg_too_long');
  if ((message.blocks?.length ?? 0) > 50) throw new Error('invalid_blocks');
  for (const block of message.blocks ?? []) {
    if (block.type === 'section' && (block.text?.text.length ?? 0) > 3000) throw new Error('invalid_blocks');
  }
  if (tableProblem(message.blocks ?? []) !== undefined) throw new Error('invalid_blocks');
}

/** An error shaped like web-api's WebAPIPlatformError (`data.error` is Slack's error code). */
function platformError(code: string): Error {
  return Object.assign(new Error(`An API error occurred: ${code}`), { code: 'slack_webapi_platform_error', data: { ok: false, error: code } });
}

/** The value of the Stop button of a message (the turn id), or undefined when it has none. */
export function stopButtonValue(message: RecordedMessage | undefined): string | undefined {
  for (const block of message?.blocks ?? []) {
    if (block.type !== 'actions') continue;
    for (const element of block.elements) if (element.type === 'button' && element.action_id === STOP_ACTION_ID) return element.value;
  }
  return undefined;
}
