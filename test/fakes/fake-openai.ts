/**
 * An OpenAI chat-completions server on 127.0.0.1 for tests. Point the real client at it with
 * `new OpenAI({ apiKey, baseURL: ai.baseUrl })`. Replies come from a queue (`enqueue`) first, then from a scripted
 * responder (`script`); a request nobody scripted answers 500 and is recorded in `unexpected`.
 * Streaming (`stream: true`) answers Server-Sent Events chunks exactly like the real API.
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import { bearerToken, closeServer, listenLocal, readBody, sendJson, waitUntil } from './http-helpers.js';

export interface ToolCallReply {
  name: string;
  /** An object (JSON-encoded for the wire) or a raw string (to test malformed arguments). */
  arguments: Record<string, unknown> | string;
  id?: string;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface Reply {
  content?: string;
  toolCalls?: ToolCallReply[];
  error?: { status: number; message: string; type?: string; code?: string; retryAfterMs?: number };
  /** Wait this long before answering (the wait ends early if the client goes away). */
  delayMs?: number;
  usage?: Partial<Usage>;
  finishReason?: 'stop' | 'tool_calls' | 'length' | 'content_filter';
}

/** What the fake received: the parsed JSON body plus headers. */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  tools?: unknown[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  [key: string]: unknown;
}

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content?: string | Array<{ type: string; text?: string }> | null;
  tool_calls?: Array<{ id: string; type: 'function'; function: { name: string; arguments: string } }>;
  tool_call_id?: string;
  [key: string]: unknown;
}

export interface RecordedRequest {
  path: string;
  body: ChatRequest;
  headers: IncomingHttpHeaders;
  at: number;
  /** True when the client went away before the answer was complete (e.g. a turn was stopped). */
  aborted: boolean;
}

export interface ResponderContext {
  /** 0-based index of this request among all requests the fake received. */
  index: number;
  headers: IncomingHttpHeaders;
}

export type Responder = (request: ChatRequest, context: ResponderContext) => Reply | Promise<Reply>;

export interface FakeOpenAIOptions {
  apiKey?: string;
  /** Characters per streamed content delta. */
  streamChunkChars?: number;
}

export class FakeOpenAI {
  readonly requests: RecordedRequest[] = [];
  readonly unexpected: Array<{ path: string; reason: string; body?: unknown }> = [];
  readonly apiKey: string;
  private readonly queue: Reply[] = [];
  private responder: Responder | undefined;
  private readonly events = new EventEmitter();
  private readonly chunkChars: number;
  private server: Server | undefined;
  private port = 0;
  private completionCounter = 0;
  private toolCallCounter = 0;

  constructor(options: FakeOpenAIOptions = {}) {
    this.apiKey = options.apiKey ?? 'sk-test';
    this.chunkChars = options.streamChunkChars ?? 8;
    this.events.setMaxListeners(0);
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

  /** The `baseURL` for the openai client: http://127.0.0.1:PORT/v1 */
  get baseUrl(): string {
    if (!this.port) throw new Error('FakeOpenAI: call start() first');
    return `http://127.0.0.1:${this.port}/v1`;
  }

  /** Answers every request (after the queue is empty) with `responder`; `undefined` removes it. */
  script(responder: Responder | undefined): this {
    this.responder = responder;
    return this;
  }

  /** Replies consumed one per request, in order, before the responder is asked. */
  enqueue(...replies: Reply[]): this {
    this.queue.push(...replies);
    return this;
  }

  get pendingReplies(): number {
    return this.queue.length;
  }

  waitForRequests(count: number, timeoutMs = 5000): Promise<RecordedRequest[]> {
    return this.waitFor(() => (this.requests.length >= count ? this.requests : undefined), timeoutMs);
  }

  waitFor<T>(predicate: (ai: this) => T | undefined | null | false, timeoutMs = 5000): Promise<T> {
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

  /** Throws when a queued reply was never used or a request came that nobody scripted. */
  assertExhausted(): void {
    if (this.queue.length > 0 || this.unexpected.length > 0) {
      throw new Error(`FakeOpenAI not exhausted: ${this.queue.length} queued replies left.\n${this.dump()}`);
    }
  }

  dump(): string {
    const lines = this.requests.map(
      (request, index) => `  #${index} ${request.body.messages?.length ?? 0} messages, last user: ${JSON.stringify(lastUserText(request.body)).slice(0, 200)}`,
    );
    const unexpected = this.unexpected.map((entry) => `  ${entry.path}: ${entry.reason}`);
    return [`OpenAI requests (${this.requests.length}):`, ...lines, `unexpected (${unexpected.length}):`, ...unexpected].join('\n');
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    const raw = (await readBody(request)).toString('utf8');
    const reject = (status: number, reason: string, body?: unknown) => {
      this.unexpected.push({ path, reason, body });
      this.events.emit('change');
      sendJson(response, status, { error: { message: reason, type: 'invalid_request_error', param: null, code: null } });
    };
    if (bearerToken(request) !== this.apiKey) return reject(401, 'Incorrect API key provided');
    if (request.method !== 'POST' || path !== '/v1/chat/completions') return reject(404, `unknown endpoint ${request.method} ${path}`);
    let body: ChatRequest;
    try {
      body = JSON.parse(raw) as ChatRequest;
    } catch {
      return reject(400, 'request body is not JSON', raw);
    }
    const record: RecordedRequest = { path, body, headers: request.headers, at: Date.now(), aborted: false };
    const index = this.requests.push(record) - 1;
    response.on('close', () => {
      if (!response.writableFinished) {
        record.aborted = true;
        this.events.emit('change');
      }
    });
    this.events.emit('change');

    const reply = this.queue.shift() ?? (this.responder ? await this.responder(body, { index, headers: request.headers }) : undefined);
    if (!reply) return reject(500, 'no reply scripted for this request', body);
    if (reply.delayMs) await delay(reply.delayMs, response);
    if (response.destroyed) return;
    if (reply.error) {
      const { status, message, type, code, retryAfterMs } = reply.error;
      return sendJson(
        response,
        status,
        { error: { message, type: type ?? (status === 429 ? 'rate_limit_exceeded' : 'server_error'), param: null, code: code ?? null } },
        { 'retry-after-ms': String(retryAfterMs ?? 1) },
      );
    }
    const completion = this.completion(body, reply);
    if (body.stream) return this.stream(response, body, completion);
    sendJson(response, 200, {
      ...completion.base,
      object: 'chat.completion',
      choices: [{ index: 0, message: completion.message, logprobs: null, finish_reason: completion.finishReason }],
      usage: completion.usage,
    });
  }

  private completion(body: ChatRequest, reply: Reply) {
    const toolCalls = (reply.toolCalls ?? []).map((call) => ({
      id: call.id ?? `call_${++this.toolCallCounter}`,
      type: 'function' as const,
      function: { name: call.name, arguments: typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments) },
    }));
    const content = reply.content ?? null;
    const promptTokens = reply.usage?.prompt_tokens ?? Math.ceil(JSON.stringify(body.messages ?? []).length / 4);
    const completionTokens =
      reply.usage?.completion_tokens ?? Math.ceil(((content ?? '').length + JSON.stringify(toolCalls).length) / 4) + 1;
    const usage: Usage = {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: reply.usage?.total_tokens ?? promptTokens + completionTokens,
    };
    const message = {
      role: 'assistant' as const,
      content,
      refusal: null,
      ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
    };
    const finishReason = reply.finishReason ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop');
    const base = { id: `chatcmpl-fake${++this.completionCounter}`, created: 1700000000, model: body.model, system_fingerprint: 'fp_fake' };
    return { base, message, usage, finishReason, toolCalls, content };
  }

  private stream(response: ServerResponse, body: ChatRequest, completion: ReturnType<FakeOpenAI['completion']>): void {
    const includeUsage = body.stream_options?.include_usage === true;
    response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const send = (choices: unknown[], usage: Usage | null = null) => {
      const chunk = { ...completion.base, object: 'chat.completion.chunk', choices, ...(includeUsage ? { usage } : {}) };
      response.write(`data: ${JSON.stringify(chunk)}\n\n`);
    };
    const delta = (value: Record<string, unknown>) => send([{ index: 0, delta: value, logprobs: null, finish_reason: null }]);
    delta({ role: 'assistant', content: '', refusal: null });
    for (const piece of pieces(completion.content ?? '', this.chunkChars)) delta({ content: piece });
    completion.toolCalls.forEach((call, index) => {
      delta({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] });
      for (const piece of pieces(call.function.arguments, this.chunkChars)) {
        delta({ tool_calls: [{ index, function: { arguments: piece } }] });
      }
    });
    send([{ index: 0, delta: {}, logprobs: null, finish_reason: completion.finishReason }]);
    if (includeUsage) send([], completion.usage);
    response.end('data: [DONE]\n\n');
  }
}

/** The text of the last user message (string content or the text parts of an array content). */
export function lastUserText(request: ChatRequest): string {
  const message = [...(request.messages ?? [])].reverse().find((candidate) => candidate.role === 'user');
  return message ? messageText(message) : '';
}

/** Every user message's text, oldest first. */
export function userTexts(request: ChatRequest): string[] {
  return (request.messages ?? []).filter((message) => message.role === 'user').map(messageText);
}

export function messageText(message: ChatMessage): string {
  if (typeof message.content === 'string') return message.content;
  if (Array.isArray(message.content)) return message.content.map((part) => part.text ?? '').join('');
  return '';
}

/** The tool results in the request (oldest first); with `sinceLastUser`, only those of the current turn. */
export function toolResults(request: ChatRequest, options: { sinceLastUser?: boolean } = {}): Array<{ toolCallId: string; content: string }> {
  const messages = request.messages ?? [];
  let start = 0;
  if (options.sinceLastUser) {
    const lastUser = messages.map((message) => message.role).lastIndexOf('user');
    start = lastUser + 1;
  }
  return messages
    .slice(start)
    .filter((message) => message.role === 'tool')
    .map((message) => ({ toolCallId: message.tool_call_id ?? '', content: messageText(message) }));
}

/** The system (or developer) prompt text. */
export function systemText(request: ChatRequest): string {
  return (request.messages ?? []).filter((message) => message.role === 'system' || message.role === 'developer').map(messageText).join('\n');
}

/** Shorthand for a tool-call reply running Python code. */
export function executeCall(code: string, id?: string): Reply {
  return { toolCalls: [{ name: 'execute', arguments: { language: 'python', code }, ...(id ? { id } : {}) }] };
}

function pieces(text: string, size: number): string[] {
  const result: string[] = [];
  for (let offset = 0; offset < text.length; offset += size) result.push(text.slice(offset, offset + size));
  return result;
}

function delay(ms: number, response: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    response.once('close', done);
    function done() {
      clearTimeout(timer);
      response.off('close', done);
      resolve();
    }
  });
}
