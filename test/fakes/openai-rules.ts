/**
 * What the real chat-completions API refuses or sends that a bot must cope with, for FakeOpenAI:
 * - the tool-call pairing rule of https://platform.openai.com/docs/guides/function-calling (each assistant
 *   message with `tool_calls` is followed by one `tool` message per call id; a `tool` message answers one of
 *   those ids), with the real API's 400 error bodies, wording included (as reported by its users, e.g.
 *   https://github.com/BerriAI/litellm/issues/10083; "preceeding" is the API's own spelling);
 * - the headers of a 429 (https://platform.openai.com/docs/guides/rate-limits: `x-ratelimit-*`, plus
 *   `retry-after` / `retry-after-ms`, which the openai client honours before its own back-off).
 */

/** The parts of a chat message the pairing rule looks at. */
export interface PairingMessage {
  role: string;
  tool_calls?: Array<{ id: string }>;
  tool_call_id?: string;
}

export interface ApiError {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

const MISSING_RESPONSES =
  "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ";
const ORPHAN_TOOL = "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.";

/** The 400 the real API answers for a conversation that breaks the tool-call pairing, or undefined. */
export function toolPairingError(messages: readonly PairingMessage[]): ApiError | undefined {
  const invalid = (index: number, message: string, field = 'role'): ApiError => ({
    message,
    type: 'invalid_request_error',
    param: `messages.[${index}].${field}`,
    code: null,
  });
  for (let index = 0; index < messages.length; index++) {
    const message = messages[index]!;
    if (message.role === 'tool') return invalid(index, ORPHAN_TOOL); // not inside the run after an assistant's calls
    const calls = message.role === 'assistant' ? (message.tool_calls ?? []) : [];
    if (calls.length === 0) continue;
    const waiting = new Set(calls.map((call) => call.id));
    let next = index + 1;
    for (; next < messages.length && messages[next]!.role === 'tool'; next++) {
      const id = messages[next]!.tool_call_id ?? '';
      if (!waiting.delete(id) && !calls.some((call) => call.id === id)) {
        return invalid(next, `Invalid parameter: 'tool_call_id' of '${id}' not found in 'tool_calls' of previous message.`, 'tool_call_id');
      }
    }
    if (waiting.size > 0) return invalid(next, MISSING_RESPONSES + [...waiting].join(', '));
    index = next - 1;
  }
  return undefined;
}

/** The body of a 429 the way the real API words a requests-per-minute limit. */
export function rateLimitError(model: string, retryAfterMs: number, message?: string): ApiError {
  return {
    message:
      message ??
      `Rate limit reached for ${model} in organization org-fake on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in ${retryAfterMs}ms. Visit https://platform.openai.com/account/rate-limits to learn more.`,
    type: 'requests',
    param: null,
    code: 'rate_limit_exceeded',
  };
}

/** The headers of a 429: when to retry (seconds and milliseconds) and the state of the limits. */
export function rateLimitHeaders(retryAfterMs: number): Record<string, string> {
  return {
    'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
    'retry-after-ms': String(retryAfterMs),
    'x-ratelimit-limit-requests': '500',
    'x-ratelimit-remaining-requests': '0',
    'x-ratelimit-reset-requests': `${retryAfterMs}ms`,
    'x-ratelimit-limit-tokens': '30000',
    'x-ratelimit-remaining-tokens': '29000',
    'x-ratelimit-reset-tokens': '2s',
  };
}
