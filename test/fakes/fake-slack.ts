/**
 * A Slack Web API server on 127.0.0.1 for tests. Point the real client at it with
 * `slackApiUrl: slack.apiUrl` (http://127.0.0.1:PORT/api/). It records every call, keeps the messages of each
 * channel (so a test can read a thread back), serves file downloads and accepts file uploads like Slack does,
 * and answers unknown methods with `unknown_method` (recorded in `unexpected`, so tests can assert none happened).
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { closeServer, listenLocal, readBody, bearerToken, sendJson, waitUntil } from './http-helpers.js';
import {
  FakeSlackFiles,
  fileHandlers,
  generatedContent,
  LOGIN_PAGE_HTML,
  type AddFileOptions,
  type CompletedUpload,
  type DownloadRecord,
  type FileServeMode,
  type SlackFile,
} from './fake-slack-files.js';
import {
  fakeUser,
  messageLimitError,
  parseArgs,
  parseJsonOr,
  SlackMessageStore,
  SUSPICIOUS_ERRORS,
  type SeedMessage,
  type SlackArgs,
  type SlackMessage,
} from './fake-slack-messages.js';
import { repliesPage } from './fake-slack-replies.js';
import { FakeStreams, streamHandlers, type FakeStream } from './fake-slack-streams.js';

export { generatedContent, LOGIN_PAGE_HTML };
export type { SeedMessage, SlackArgs, SlackMessage };
export type { AddFileOptions, CompletedUpload, DownloadRecord, FileServeMode, SlackFile };

export interface FakeSlackOptions {
  botToken: string;
  botUserId: string;
  teamId: string;
  botId?: string;
  /** Socket Mode: the app token that may call apps.connections.open, and the ws:// URL it answers. */
  socketMode?: { appToken: string; url: () => string };
}

export interface RecordedCall {
  method: string;
  args: SlackArgs;
  /** Date.now() when the call arrived. */
  at: number;
}

type Handler = (args: SlackArgs) => SlackArgs | Promise<SlackArgs>;

export class FakeSlack {
  readonly calls: RecordedCall[] = [];
  /** Calls nobody expected: unknown or retired methods, bad tokens, malformed bodies. */
  readonly unexpected: Array<{ method: string; args: SlackArgs; reason: string }> = [];
  /** Calls answered with 429 by the rate-limit simulation (not in `calls`). */
  readonly rateLimited: RecordedCall[] = [];
  /** Bodies posted to response URLs made by `newResponseUrl()`. */
  readonly responses: Array<{ id: string; body: unknown }> = [];
  readonly botToken: string;
  readonly botUserId: string;
  readonly teamId: string;
  readonly botId: string;
  /** How assistant.threads.setStatus answers: 'ok', or an error code such as 'not_allowed_token_type'. */
  setStatusResult: 'ok' | string = 'ok';
  /** Streaming messages and agent sessions (chat.*Stream, agents.sessions.setStatus), with Slack's rules. */
  readonly streams: FakeStreams;

  private readonly messages: SlackMessageStore;
  private readonly events = new EventEmitter();
  private readonly rateLimits = new Map<string, { every: number; count: number; retryAfterSec: number }>();
  private readonly files: FakeSlackFiles;
  private readonly handlers: Record<string, Handler>;
  private server: Server | undefined;
  private port = 0;
  private responseCounter = 0;
  private readonly socketMode: FakeSlackOptions['socketMode'];

  constructor(options: FakeSlackOptions) {
    this.botToken = options.botToken;
    this.botUserId = options.botUserId;
    this.teamId = options.teamId;
    this.botId = options.botId ?? 'BBOT';
    this.socketMode = options.socketMode;
    this.events.setMaxListeners(0);
    this.messages = new SlackMessageStore(() => this.events.emit('change'));
    this.files = new FakeSlackFiles(this.botToken, () => this.baseUrl, () => this.events.emit('change'));
    this.streams = new FakeStreams(() => this.messages.nextTs(), () => this.events.emit('change'));
    this.handlers = this.createHandlers();
  }

  async start(): Promise<this> {
    const { server, port } = await listenLocal((request, response) => this.route(request, response));
    this.server = server;
    this.port = port;
    return this;
  }

  async close(): Promise<void> {
    if (this.server) await closeServer(this.server);
  }

  get baseUrl(): string {
    if (!this.port) throw new Error('FakeSlack: call start() first');
    return `http://127.0.0.1:${this.port}/`;
  }

  get apiUrl(): string {
    return `${this.baseUrl}api/`;
  }

  get uploads(): CompletedUpload[] {
    return this.files.uploads;
  }

  get downloads(): DownloadRecord[] {
    return this.files.downloads;
  }

  callsTo(method: string): RecordedCall[] {
    return this.calls.filter((call) => call.method === method);
  }

  /** Resolves with the predicate's first truthy value; on timeout rejects with a dump of the calls so far. */
  waitFor<T>(predicate: (slack: this) => T | undefined | null | false, timeoutMs = 5000): Promise<T> {
    return waitUntil(
      () => predicate(this),
      (listener) => {
        this.events.on('change', listener);
        return () => this.events.off('change', listener);
      },
      timeoutMs,
      () => this.dump(),
    );
  }

  /** The messages of a thread as a user would see it: parent first, updates applied, deleted ones gone. */
  messagesIn(channel: string, threadTs: string): SlackMessage[] {
    return this.messages.thread(channel, threadTs);
  }

  /** The bot's own messages in a thread (what it posted, updated, and its file shares). */
  botMessagesIn(channel: string, threadTs: string): SlackMessage[] {
    return this.messagesIn(channel, threadTs).filter((message) => message.user === this.botUserId);
  }

  /** Puts a message into a channel as if a user had posted it (conversations.replies returns it). */
  seedMessage(seed: SeedMessage): SlackMessage {
    const message: SlackMessage = { ...seed };
    this.messages.store(message);
    return message;
  }

  /** Stores the user message an event describes (what real Slack would hold), so conversations.replies finds it. */
  seedFromEvent(event: Record<string, unknown>): SlackMessage {
    const seed: SeedMessage = { channel: String(event.channel), ts: String(event.ts), user: String(event.user), text: String(event.text ?? '') };
    if (typeof event.thread_ts === 'string') seed.thread_ts = event.thread_ts;
    if (Array.isArray(event.files)) seed.files = event.files as SlackFile[];
    return this.seedMessage(seed);
  }

  addFile(options: AddFileOptions): SlackFile {
    return this.files.add(options);
  }

  setFileMode(fileId: string, mode: FileServeMode): void {
    this.files.setMode(fileId, mode);
  }

  /** Every `every`-th call to `method` answers 429 with Retry-After (default 1 s); the real client waits and retries. */
  rateLimit(method: string, options: { every: number; retryAfterSec?: number }): void {
    this.rateLimits.set(method, { every: options.every, count: 0, retryAfterSec: options.retryAfterSec ?? 1 });
  }

  clearRateLimits(): void {
    this.rateLimits.clear();
  }

  /** A response_url for interactive payloads; what the bot posts there lands in `responses`. */
  newResponseUrl(): string {
    return `${this.baseUrl}respond/${++this.responseCounter}`;
  }

  /** A human-readable summary of what happened, for failure messages. */
  dump(): string {
    const lines = this.calls.map((call) => `  ${call.method} ${truncate(JSON.stringify(call.args), 300)}`);
    const unexpected = this.unexpected.map((entry) => `  ${entry.method}: ${entry.reason}`);
    return [`Slack calls (${this.calls.length}):`, ...lines, `unexpected (${unexpected.length}):`, ...unexpected].join('\n');
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const parts = url.pathname.split('/').filter(Boolean);
    if (parts[0] === 'api' && parts[1] && request.method === 'POST') return this.apiCall(parts[1], request, response);
    if (parts[0] === 'upload' && parts[1] && request.method === 'POST') return this.files.receiveUpload(parts[1], request, response);
    if (parts[0] === 'files-pri' && parts[1] && request.method === 'GET') return this.files.serveDownload(parts[1], request, response);
    if (parts[0] === 'respond' && parts[1] && request.method === 'POST') {
      const text = (await readBody(request)).toString('utf8');
      this.responses.push({ id: parts[1], body: parseJsonOr(text) });
      this.events.emit('change');
      return sendJson(response, 200, { ok: true });
    }
    this.unexpected.push({ method: `${request.method} ${url.pathname}`, args: {}, reason: 'unknown path' });
    response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  }

  private async apiCall(method: string, request: IncomingMessage, response: ServerResponse): Promise<void> {
    const raw = (await readBody(request)).toString('utf8');
    const args = parseArgs(raw, request.headers['content-type'] ?? '');
    const token = bearerToken(request) ?? (typeof args.token === 'string' ? args.token : undefined);
    delete args.token;
    const limit = this.rateLimits.get(method);
    if (limit && ++limit.count % limit.every === 0) {
      this.rateLimited.push({ method, args, at: Date.now() });
      this.events.emit('change');
      return sendJson(response, 429, { ok: false, error: 'ratelimited' }, { 'retry-after': String(limit.retryAfterSec) });
    }
    const fail = (reason: string, error: string) => {
      this.unexpected.push({ method, args, reason });
      this.events.emit('change');
      sendJson(response, 200, { ok: false, error });
    };
    if (method === 'apps.connections.open' && this.socketMode !== undefined && token === this.socketMode.appToken) {
      this.calls.push({ method, args, at: Date.now() });
      return sendJson(response, 200, { ok: true, url: this.socketMode.url() });
    }
    if (token !== this.botToken) return fail('missing or wrong bot token', 'invalid_auth');
    if (method === 'files.upload') return fail('files.upload is retired: use files.uploadV2', 'method_deprecated');
    const handler = this.handlers[method];
    if (!handler) return fail('unknown method', 'unknown_method');
    this.calls.push({ method, args, at: Date.now() });
    const result = await handler(args);
    if (result.ok === false && typeof result.error === 'string' && SUSPICIOUS_ERRORS.has(result.error)) {
      this.unexpected.push({ method, args, reason: String(result.error) });
    }
    this.events.emit('change');
    sendJson(response, 200, { ...result, response_metadata: { warnings: [], ...(result.response_metadata as SlackArgs | undefined) } });
  }

  private createHandlers(): Record<string, Handler> {
    const required = (args: SlackArgs, ...names: string[]) => names.find((name) => args[name] === undefined || args[name] === '');
    return {
      'auth.test': () => ({
        ok: true,
        url: 'https://fake.slack.test/',
        team: 'Fake Team',
        user: 'bot',
        team_id: this.teamId,
        user_id: this.botUserId,
        bot_id: this.botId,
        is_enterprise_install: false,
      }),
      'chat.postMessage': (args) => {
        const missing = required(args, 'channel');
        if (missing) return { ok: false, error: 'channel_not_found' };
        if (!args.text && !args.blocks && !args.attachments && !args.markdown_text) return { ok: false, error: 'no_text' };
        const invalid = messageLimitError(args);
        if (invalid) return { ok: false, error: invalid };
        const message = this.botMessage(String(args.channel), args);
        this.messages.store(message);
        return { ok: true, channel: message.channel, ts: message.ts, message: { ...message, type: 'message' } };
      },
      'chat.update': (args) => {
        const message = this.messages.find(String(args.channel), String(args.ts));
        if (!message) return { ok: false, error: 'message_not_found' };
        if (this.streams.find(message.ts)?.state === 'streaming') return { ok: false, error: 'streaming_state_conflict' };
        const invalid = messageLimitError(args);
        if (invalid) return { ok: false, error: invalid };
        if (args.text !== undefined) message.text = String(args.text);
        if (args.blocks !== undefined) message.blocks = args.blocks as unknown[];
        message.edited = { user: this.botUserId, ts: this.messages.nextTs() };
        return { ok: true, channel: message.channel, ts: message.ts, text: message.text, message: { ...message } };
      },
      'chat.delete': (args) => {
        if (!this.messages.remove(String(args.channel), String(args.ts))) return { ok: false, error: 'message_not_found' };
        return { ok: true, channel: String(args.channel), ts: String(args.ts) };
      },
      'chat.postEphemeral': (args) => {
        const missing = required(args, 'channel', 'user');
        if (missing) return { ok: false, error: missing === 'user' ? 'user_not_in_channel' : 'channel_not_found' };
        return { ok: true, message_ts: this.messages.nextTs() };
      },
      'conversations.replies': (args) => {
        const channel = String(args.channel);
        const named = this.messages.find(channel, String(args.ts));
        if (!named) return { ok: false, error: 'thread_not_found' };
        const threadTs = named.thread_ts ?? named.ts;
        return repliesPage(this.messagesIn(channel, threadTs), threadTs, args);
      },
      ...streamHandlers(this.streams, (stream) => this.showStream(stream)),
      'reactions.add': (args) => this.messages.react(String(args.channel), String(args.timestamp), String(args.name), this.botUserId, 'add'),
      'reactions.remove': (args) => this.messages.react(String(args.channel), String(args.timestamp), String(args.name), this.botUserId, 'remove'),
      'users.info': (args) => ({ ok: true, user: fakeUser(String(args.user), this.teamId, this.botUserId) }),
      'assistant.threads.setStatus': (args) => {
        if (required(args, 'channel_id', 'thread_ts') || args.status === undefined) return { ok: false, error: 'invalid_arguments' };
        return this.setStatusResult === 'ok' ? { ok: true } : { ok: false, error: this.setStatusResult };
      },
      ...fileHandlers(this.files, (share) => this.messages.store({ ...this.botMessage(share.channel, { text: share.text, thread_ts: share.threadTs }), files: share.files })),
    };
  }

  /** A streaming message is a message of the thread too: its text is the markdown streamed so far. */
  private showStream(stream: FakeStream): void {
    const message = this.messages.find(stream.channel, stream.ts);
    if (message !== undefined) message.text = stream.markdown;
    else this.messages.store({ channel: stream.channel, ts: stream.ts, thread_ts: stream.threadTs, user: this.botUserId, bot_id: this.botId, text: stream.markdown });
  }

  private botMessage(channel: string, args: SlackArgs): SlackMessage {
    const message: SlackMessage = {
      channel,
      ts: this.messages.nextTs(),
      user: this.botUserId,
      bot_id: this.botId,
      text: args.text === undefined ? '' : String(args.text),
    };
    if (args.thread_ts !== undefined && args.thread_ts !== '') message.thread_ts = String(args.thread_ts);
    if (args.blocks !== undefined) message.blocks = args.blocks as unknown[];
    return message;
  }
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
