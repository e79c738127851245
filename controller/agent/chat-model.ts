import OpenAI, { APIConnectionError, APIError } from 'openai';
import type {
  ChatCompletionMessageFunctionToolCall,
  ChatCompletionMessageParam,
  ChatCompletionTool,
} from 'openai/resources/chat/completions';
import { AppError, describeError } from '../errors.js';

/**
 * The model seam: one chat-completion call with tools. The agent loop only sees this interface, so a test
 * drives it with a scripted model (test/helpers/scripted-model.ts) and production with OpenAI's API (or any
 * OpenAI-compatible server). Messages keep OpenAI's chat format: it is also the format of the stored history.
 */

export type ToolCall = ChatCompletionMessageFunctionToolCall;

export interface ModelRequest {
  messages: ChatCompletionMessageParam[];
  tools: ChatCompletionTool[];
  /** `none` when the model must answer now (the step limit is reached). */
  toolChoice: 'auto' | 'none';
  signal?: AbortSignal;
  /** Streaming mode: called with each piece of the reply's text as the model writes it. */
  onText?: (delta: string) => void;
}

export interface ModelReply {
  /** The text of the reply ('' when there is none). */
  content: string;
  /** Function tool calls, in the order the model made them. */
  toolCalls: ToolCall[];
  totalTokens: number;
}

export interface ChatModel {
  /** One completion. Throws ModelError when the service fails (after the client's own retries). */
  complete(request: ModelRequest): Promise<ModelReply>;
}

/** The model service failed; `userMessage` says how, in one sentence for the thread. */
export class ModelError extends AppError {
  readonly code = 'model_failed';
}

/** ChatModel over the `openai` client: chat completions (https://platform.openai.com/docs/api-reference/chat/create). */
export class OpenAIChatModel implements ChatModel {
  constructor(
    private readonly client: OpenAI,
    private readonly model: string,
  ) {}

  async complete(request: ModelRequest): Promise<ModelReply> {
    // The openai client never removes its listener from the signal it gets; give each request its own
    // signal linked to the turn's, so a long turn does not pile listeners on the turn's signal.
    const requestSignal = linkedSignal(request.signal);
    const body = { model: this.model, messages: request.messages, tools: request.tools, tool_choice: request.toolChoice };
    let completion: OpenAI.Chat.Completions.ChatCompletion;
    try {
      completion = request.onText === undefined
        ? await this.client.chat.completions.create(body, { signal: requestSignal.signal })
        : await streamed(this.client, body, request.onText, requestSignal.signal);
    } catch (error) {
      throw new ModelError(describeError(error), { cause: error, userMessage: describeModelFailure(error) });
    } finally {
      requestSignal.unlink();
    }
    const reply = completion.choices[0]?.message;
    return {
      content: reply?.content ?? '',
      toolCalls: (reply?.tool_calls ?? []).filter((call): call is ToolCall => call.type === 'function'),
      totalTokens: completion.usage?.total_tokens ?? 0,
    };
  }
}

/**
 * The same completion through the openai client's streaming helper (`chat.completions.stream`,
 * https://github.com/openai/openai-node/blob/master/helpers.md#chat-events): text pieces go to `onText` as they
 * arrive, the helper assembles the whole completion (tool calls included), and `include_usage` makes the last
 * chunk carry the token counts the budgets need.
 */
async function streamed(
  client: OpenAI,
  body: Pick<OpenAI.Chat.Completions.ChatCompletionCreateParams, 'model' | 'messages' | 'tools' | 'tool_choice'>,
  onText: (delta: string) => void,
  signal: AbortSignal,
): Promise<OpenAI.Chat.Completions.ChatCompletion> {
  const stream = client.chat.completions.stream({ ...body, stream_options: { include_usage: true } }, { signal });
  stream.on('content', (delta) => onText(delta));
  return stream.finalChatCompletion();
}

function describeModelFailure(error: unknown): string {
  if (error instanceof APIConnectionError) return 'I could not reach the model service.';
  if (error instanceof APIError && error.status !== undefined) {
    if (error.status === 429) return 'The model service is rate-limiting or out of quota (HTTP 429), even after retries.';
    if (error.status === 401 || error.status === 403) return `The model service refused the API key (HTTP ${error.status}): an admin should check OPENAI_API_KEY.`;
    return `The model service answered with an error (HTTP ${error.status}), even after retries.`;
  }
  return 'The model service failed.';
}

/** A signal that aborts with `parent`; `unlink()` removes the link once the request is over. */
function linkedSignal(parent: AbortSignal | undefined): { signal: AbortSignal; unlink: () => void } {
  const controller = new AbortController();
  if (parent === undefined) return { signal: controller.signal, unlink: () => {} };
  const onAbort = () => controller.abort(parent.reason);
  if (parent.aborted) onAbort();
  else parent.addEventListener('abort', onAbort, { once: true });
  return { signal: controller.signal, unlink: () => parent.removeEventListener('abort', onAbort) };
}
