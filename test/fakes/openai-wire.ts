/**
 * The chat-completions wire format as FakeOpenAI records and answers it, and small readers of a recorded
 * request for tests (the last user text, the tool results of a turn, ...).
 */

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
  /**
   * Answer with an HTTP error instead. A 429 carries the real API's headers (retry-after, retry-after-ms,
   * x-ratelimit-*), asking for a retry after `retryAfterMs` (default 50); other statuses carry no retry hint
   * unless `retryAfterMs` is given.
   */
  error?: { status: number; message?: string; type?: string; code?: string; retryAfterMs?: number };
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
