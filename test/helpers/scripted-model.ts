import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { ChatModel, ModelReply, ModelRequest, ToolCall } from '../../controller/agent/chat-model.js';

/**
 * A ChatModel that answers from a script: an array of replies (or functions of the request, or errors to
 * throw), a record of every request, and `assertComplete()` to check the whole script was used and every
 * request was one the real API accepts (each assistant tool call answered by a tool message).
 */

export type ScriptedReply = Partial<ModelReply> | Error | ((request: ModelRequest) => Partial<ModelReply> | Promise<Partial<ModelReply>>);

let callCounter = 0;

/** A reply that calls `execute` with Python code. */
export function executeReply(code: string, content = ''): Partial<ModelReply> {
  const call: ToolCall = { id: `call_${++callCounter}`, type: 'function', function: { name: 'execute', arguments: JSON.stringify({ language: 'python', code }) } };
  return { content, toolCalls: [call], totalTokens: 10 };
}

export class ScriptedModel implements ChatModel {
  readonly requests: ModelRequest[] = [];
  /** Requests the real API would have refused, as sentences. */
  readonly problems: string[] = [];
  private readonly script: ScriptedReply[];

  constructor(script: ScriptedReply[]) {
    this.script = [...script];
  }

  async complete(request: ModelRequest): Promise<ModelReply> {
    this.requests.push(request);
    const problem = unansweredToolCall(request.messages);
    if (problem !== undefined) this.problems.push(`request ${this.requests.length}: ${problem}`);
    const next = this.script.shift();
    if (next === undefined) throw new Error(`ScriptedModel: no reply scripted for request ${this.requests.length}`);
    if (next instanceof Error) throw next;
    const reply = typeof next === 'function' ? await next(request) : next;
    // Streaming mode: the text in pieces first, as the real client's streaming helper delivers it.
    for (const piece of (reply.content ?? '').match(/[\s\S]{1,7}/g) ?? []) request.onText?.(piece);
    return { content: '', toolCalls: [], totalTokens: 0, ...reply };
  }

  /** Every scripted reply was asked for, and every request was valid. */
  assertComplete(): void {
    if (this.script.length > 0) throw new Error(`ScriptedModel: ${this.script.length} scripted replies were never requested`);
    if (this.problems.length > 0) throw new Error(`ScriptedModel: invalid requests: ${this.problems.join('; ')}`);
  }
}

/** The API refuses a conversation in which an assistant's tool call has no tool message after it. */
function unansweredToolCall(messages: ChatCompletionMessageParam[]): string | undefined {
  for (const [index, message] of messages.entries()) {
    if (message.role !== 'assistant' || message.tool_calls === undefined) continue;
    const answered = new Set<string>();
    for (const next of messages.slice(index + 1)) {
      if (next.role !== 'tool') break;
      answered.add(next.tool_call_id);
    }
    const missing = message.tool_calls.filter((call) => !answered.has(call.id));
    if (missing.length > 0) return `tool call ${missing[0]!.id} has no tool message`;
  }
  return undefined;
}
