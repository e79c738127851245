import type { AnyChunk, TaskUpdateChunk } from '@slack/types';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { codePointBoundary } from '../text.js';
import type { SlackThread, StreamRecipient } from './slack-thread.js';
import type { StreamPacer } from './stream-pacer.js';

/**
 * One streamed reply (chat.startStream / appendStream / stopStream, https://docs.slack.dev/messaging/sending-and-scheduling-messages#text-streaming):
 * text and task cards go in as they come and leave in timed batches.
 *
 * Written here rather than with web-api's `client.chatStream()` helper, which buffers by size only (no timer, so a
 * slow model leaves text waiting), never splits a call at Slack's 12,000 characters of markdown, keeps failed text
 * in its buffer and retries the same call, and cannot tell the caller what never reached Slack. This one:
 * - starts the stream with the first content (chunks from the start, so every later call sends chunks too:
 *   mixing in `markdown_text` is `streaming_mode_mismatch`);
 * - makes one call at a time; an append at least `pacer.intervalMs()` after the previous call (Slack's rate tiers),
 *   with the text gathered meanwhile and every task update, at most 12,000 characters of markdown per call; the
 *   stop as soon as the answer is complete, with what is left;
 * - keeps a long step's stream alive by repeating its task card (Slack ends streams that stay quiet);
 * - when Slack ends the stream under it (`message_not_in_streaming_state` after its undocumented timeout,
 *   `stopped_by_user` after someone else pressed Stop) continues in a new streamed message, at most
 *   MAX_RESTARTS times; when a stream cannot start or continue it is `broken`: nothing more is sent, and
 *   `close()` returns the markdown Slack never got, for the caller to post as ordinary replies.
 */

/** Slack's limit of markdown per call (https://docs.slack.dev/reference/methods/chat.appendStream). */
const MAX_MARKDOWN_PER_CALL = 12_000;
/** Title, details and output of a task card: 256 characters each (Slack's guidance for task_update chunks). */
const MAX_TASK_FIELD = 256;
const MAX_RESTARTS = 2;
/** Errors that mean the stream message no longer takes appends, so a new one may take over. */
const STREAM_GONE = new Set(['message_not_in_streaming_state', 'stopped_by_user', 'message_not_found']);
const DEFAULT_KEEP_ALIVE_MS = 15_000;

export type StreamTask = Omit<TaskUpdateChunk, 'type'>;

export class SlackStream {
  private ts: string | undefined;
  private state: 'idle' | 'open' | 'broken' | 'closed' = 'idle';
  /** Text and task updates not sent yet, in the order they came (a card stays where its step happened). */
  private pending: AnyChunk[] = [];
  /** Task cards still in progress: repeated to keep the stream alive, and re-sent in a new stream. */
  private readonly running = new Map<string, StreamTask>();
  private unsent = '';
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private keepAlive: NodeJS.Timeout | undefined;
  private lastCallAt = 0;
  private restarts = 0;
  private counted = false;
  private closing = false;

  constructor(
    private readonly thread: SlackThread,
    private readonly options: {
      recipient: StreamRecipient;
      pacer: StreamPacer;
      logger: Logger;
      /** Called once when the stream is broken: the caller shows the rest of the turn another way. */
      onBroken?: () => void;
      keepAliveMs?: number;
    },
  ) {}

  /** True once nothing more can be streamed (start refused, or the stream ended and could not continue). */
  get broken(): boolean {
    return this.state === 'broken';
  }

  appendText(text: string): void {
    if (text === '' || this.state === 'closed') return;
    if (this.state === 'broken') {
      this.unsent += text;
      return;
    }
    const last = this.pending.at(-1);
    if (last?.type === 'markdown_text') last.text += text;
    else this.pending.push({ type: 'markdown_text', text });
    this.schedule();
  }

  updateTask(task: StreamTask): void {
    const clipped = clipTask(task);
    if (clipped.status === 'in_progress') this.running.set(clipped.id, { id: clipped.id, title: clipped.title, status: 'in_progress' });
    else this.running.delete(clipped.id);
    if (this.state !== 'idle' && this.state !== 'open') return;
    this.pending.push({ type: 'task_update', ...clipped });
    this.schedule();
  }

  /** Sends what is left and stops the stream; resolves with the markdown Slack never got ('' when it got all). */
  async close(): Promise<string> {
    // From here close() alone makes the calls: no timer may start one beside it (one call at a time).
    this.closing = true;
    this.clearTimers();
    await this.chain;
    this.clearTimers();
    // A call that fails may start a new message (state back to idle): loop until stopped or broken.
    while (this.state === 'idle' || this.state === 'open') {
      if (this.state === 'idle' && this.pending.length === 0) break;
      if (this.state === 'idle' || markdownOf(this.pending).length > MAX_MARKDOWN_PER_CALL) await this.sendBatch();
      else await this.stop();
    }
    this.clearTimers(); // the last call armed the keep-alive again
    if (this.counted) this.options.pacer.closed();
    this.counted = false;
    const rest = this.unsent + markdownOf(this.pending);
    this.state = 'closed';
    this.pending = [];
    this.unsent = '';
    return rest;
  }

  private schedule(): void {
    if (this.closing || this.timer !== undefined || this.pending.length === 0) return;
    const wait = Math.max(0, this.lastCallAt + this.options.pacer.intervalMs() - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.chain = this.chain.then(() => this.sendBatch()).then(() => this.schedule());
    }, wait);
  }

  /** One call with what has gathered (at most 12,000 characters of markdown), starting the stream when needed. */
  private async sendBatch(): Promise<void> {
    if ((this.state !== 'idle' && this.state !== 'open') || this.pending.length === 0) return;
    // Appends are paced (Tier 4, shared by every stream); a start is counted by the pacer's own budget.
    if (this.state === 'open') await this.waitForInterval();
    const batch = this.takeBatch();
    try {
      if (this.state === 'idle') await this.start(batch);
      else await this.thread.appendStream(this.ts!, batch);
    } catch (error) {
      this.failed(error, batch);
    } finally {
      this.lastCallAt = Date.now();
      this.armKeepAlive();
    }
  }

  private takeBatch(): AnyChunk[] {
    const batch: AnyChunk[] = [];
    let budget = MAX_MARKDOWN_PER_CALL;
    while (this.pending.length > 0) {
      const chunk = this.pending[0]!;
      if (chunk.type === 'markdown_text' && chunk.text.length > budget) {
        const cut = codePointBoundary(chunk.text, budget);
        if (cut > 0) batch.push({ type: 'markdown_text', text: chunk.text.slice(0, cut) });
        chunk.text = chunk.text.slice(cut);
        break;
      }
      if (chunk.type === 'markdown_text') budget -= chunk.text.length;
      batch.push(this.pending.shift()!);
    }
    return batch;
  }

  private async start(chunks: AnyChunk[]): Promise<void> {
    if (!this.options.pacer.tryStart()) throw new StreamBudgetError();
    this.ts = await this.thread.startStream(this.options.recipient, chunks);
    this.state = 'open';
    if (!this.counted) this.options.pacer.opened();
    this.counted = true;
  }

  /** chat.stopStream is Tier 2 like a start, one per stream: it goes as soon as the previous call is done. */
  private async stop(): Promise<void> {
    const chunks = this.pending;
    this.pending = [];
    try {
      await this.thread.stopStream(this.ts!, chunks);
      this.state = 'closed';
    } catch (error) {
      this.failed(error, chunks);
    } finally {
      this.lastCallAt = Date.now();
    }
  }

  /** A call failed: continue in a new message when Slack ended the stream, else stop streaming for good. */
  private failed(error: unknown, batch: AnyChunk[]): void {
    const code = slackErrorCode(error);
    this.options.logger.warn('stream call failed', { state: this.state, code, error: describeError(error) });
    if (this.state === 'open' && code !== undefined && STREAM_GONE.has(code) && this.restarts < MAX_RESTARTS) {
      this.restarts += 1;
      this.state = 'idle';
      this.ts = undefined;
      const notRunning = batch.filter((chunk) => chunk.type !== 'task_update' || chunk.status !== 'in_progress');
      const cards: AnyChunk[] = [...this.running.values()].map((task) => ({ type: 'task_update', ...task }));
      this.pending = [...cards, ...notRunning, ...this.pending];
      return;
    }
    this.state = 'broken';
    this.unsent += markdownOf(batch) + markdownOf(this.pending);
    this.pending = [];
    this.options.onBroken?.();
  }

  private async waitForInterval(): Promise<void> {
    const wait = this.lastCallAt + this.options.pacer.intervalMs() - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }

  private armKeepAlive(): void {
    if (this.keepAlive !== undefined) clearTimeout(this.keepAlive);
    this.keepAlive = setTimeout(() => {
      this.keepAlive = undefined;
      if (this.closing || this.state !== 'open' || this.running.size === 0 || this.pending.length > 0) return;
      this.pending.push(...[...this.running.values()].map((task): AnyChunk => ({ type: 'task_update', ...task })));
      this.schedule();
    }, this.options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS);
    this.keepAlive.unref();
  }

  private clearTimers(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.keepAlive !== undefined) clearTimeout(this.keepAlive);
    this.timer = undefined;
    this.keepAlive = undefined;
  }
}

/** More streams started in the last minute than Slack's tier allows (StreamPacer): this turn does not stream. */
class StreamBudgetError extends Error {
  readonly data = { error: 'rate_budget' };
  constructor() {
    super('too many streams started in the last minute');
  }
}

function markdownOf(chunks: readonly AnyChunk[]): string {
  return chunks.map((chunk) => (chunk.type === 'markdown_text' ? chunk.text : '')).join('');
}

/** Slack's error code of a failed Web API call (`data.error` of web-api's WebAPIPlatformError), if any. */
function slackErrorCode(error: unknown): string | undefined {
  const data = (error as { data?: { error?: unknown } } | null)?.data;
  return typeof data?.error === 'string' ? data.error : undefined;
}

function clipTask(task: StreamTask): StreamTask {
  const clip = (text: string) => (text.length <= MAX_TASK_FIELD ? text : `${text.slice(0, codePointBoundary(text, MAX_TASK_FIELD - 1))}…`);
  return {
    ...task,
    title: clip(task.title),
    ...(task.details === undefined ? {} : { details: clip(task.details) }),
    ...(task.output === undefined ? {} : { output: task.output.length <= MAX_TASK_FIELD ? task.output : `…${task.output.slice(-(MAX_TASK_FIELD - 1))}` }),
  };
}
