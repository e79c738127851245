/**
 * An OpenAI chat-completions server on 127.0.0.1 for tests. Point the real client at it with
 * `new OpenAI({ apiKey, baseURL: ai.baseUrl })`. Replies come from a queue (`enqueue`) first, then from a scripted
 * responder (`script`); a request nobody scripted answers 500 and is recorded in `unexpected`.
 * Streaming (`stream: true`) answers Server-Sent Events chunks exactly like the real API.
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import { bearerToken, closeServer, listenLocal, readBody, sendJson, waitUntil } from './http-helpers.js';
import { rateLimitError, rateLimitHeaders, toolPairingError } from './openai-rules.js';
import { lastUserText, type ChatRequest, type Reply, type Usage } from './openai-wire.js';

export * from './openai-wire.js';

export interface RecordedRequest {
  path: string;
  body: ChatRequest;
  headers: IncomingHttpHeaders;
  at: number;
  /** True when the client went away before the answer was complete (e.g. a turn was stopped). */
  aborted: boolean;
  /** The HTTP status the fake answered with (0 while the answer is pending). */
  status: number;
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
  private requestCounter = 0;

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
    const reject = (status: number, reason: string, body?: unknown, param: string | null = null) => {
      this.unexpected.push({ path, reason, body });
      this.events.emit('change');
      sendJson(response, status, { error: { message: reason, type: 'invalid_request_error', param, code: null } }, this.requestIdHeader());
    };
    if (bearerToken(request) !== this.apiKey) return reject(401, 'Incorrect API key provided');
    if (request.method !== 'POST' || path !== '/v1/chat/completions') return reject(404, `unknown endpoint ${request.method} ${path}`);
    let body: ChatRequest;
    try {
      body = JSON.parse(raw) as ChatRequest;
    } catch {
      return reject(400, 'request body is not JSON', raw);
    }
    const invalid = toolPairingError(body.messages ?? []);
    if (invalid !== undefined) return reject(400, invalid.message, body, invalid.param);
    const record: RecordedRequest = { path, body, headers: request.headers, at: Date.now(), aborted: false, status: 0 };
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
    record.status = reply.error?.status ?? 200;
    this.events.emit('change');
    if (reply.error) return this.sendError(response, body, reply.error);
    const completion = this.completion(body, reply);
    if (body.stream) return this.stream(response, body, completion);
    const answer = {
      ...completion.base,
      object: 'chat.completion',
      choices: [{ index: 0, message: completion.message, logprobs: null, finish_reason: completion.finishReason }],
      usage: completion.usage,
    };
    sendJson(response, 200, answer, this.requestIdHeader());
  }

  private sendError(response: ServerResponse, body: ChatRequest, error: NonNullable<Reply['error']>): void {
    const { status, message, type, code, retryAfterMs } = error;
    if (status === 429) {
      const wait = retryAfterMs ?? 50;
      const payload = { ...rateLimitError(body.model, wait, message), ...(type ? { type } : {}), ...(code ? { code } : {}) };
      return sendJson(response, status, { error: payload }, { ...rateLimitHeaders(wait), ...this.requestIdHeader() });
    }
    const retryHint: Record<string, string> = retryAfterMs === undefined ? {} : { 'retry-after-ms': String(retryAfterMs) };
    const payload = { message: message ?? 'The server had an error while processing your request.', type: type ?? 'server_error', param: null, code: code ?? null };
    sendJson(response, status, { error: payload }, { ...retryHint, ...this.requestIdHeader() });
  }

  /** Every answer of the real API carries a request id (the openai client keeps it as `requestID`). */
  private requestIdHeader(): Record<string, string> {
    return { 'x-request-id': `req_fake${++this.requestCounter}` };
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
