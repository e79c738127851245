import { SandboxError, type SandboxSession, type StepResult } from '../sandbox/sandbox.js';
import type { ChatModel, ModelReply, ModelRequest, ToolCall } from './chat-model.js';
import { EXECUTE_TOOL, parseExecuteArguments, stepTitle } from './execute-tool.js';
import { toModelMessages, type HistoryMessage } from './history.js';
import { budgetReached, explainBudgetCut, stepLimitReached, stepTimeoutSec, type TurnLimits, type Usage } from './stop-conditions.js';
import { formatStepForModel } from './tool-output.js';

/**
 * One turn: model → execute → model … until the model answers, a stop condition holds (stop-conditions.ts)
 * or the turn is stopped. Everything a turn touches is in its input: two turns never share state.
 */

export type AgentEvent =
  | { type: 'model_call'; stepsSoFar: number }
  /** A piece of the model's text as it writes it (only with `streamText`). */
  | { type: 'text'; text: string }
  | { type: 'step_started'; index: number; title: string; code: string; language: string }
  | { type: 'step_finished'; index: number; result: StepResult };

export type StopReason = 'answered' | 'max_steps' | 'token_budget' | 'sandbox_budget' | 'cancelled' | 'model_error' | 'sandbox_error';

export interface TurnOutcome {
  stopReason: StopReason;
  /** Markdown answer from the model (or empty when the turn ended without one). */
  answer: string;
  /** New messages of this turn, to append to the history (tool calls always paired with results). */
  messages: HistoryMessage[];
  steps: number;
  usage: Usage;
  /** The error that ended the turn, for stopReason model_error / sandbox_error. */
  error?: unknown;
}

export interface AgentLoopInput {
  model: ChatModel;
  /** The thread's sandbox session: every step of the turn runs in it. */
  session: SandboxSession;
  systemPrompt: string;
  history: readonly HistoryMessage[];
  userMessage: HistoryMessage;
  limits: TurnLimits;
  signal?: AbortSignal;
  onEvent?: (event: AgentEvent) => void;
  /** Ask the model to stream its text: each piece comes as a `text` event. */
  streamText?: boolean;
}

/** What the turn has done so far. */
class TurnState {
  readonly messages: HistoryMessage[];
  readonly usage: Usage = { totalTokens: 0, sandboxMs: 0 };
  steps = 0;

  constructor(userMessage: HistoryMessage) {
    this.messages = [userMessage];
  }

  end(stopReason: StopReason, answer = '', error?: unknown): TurnOutcome {
    return { stopReason, answer, messages: this.messages, steps: this.steps, usage: this.usage, error };
  }
}

export async function runAgentLoop(input: AgentLoopInput): Promise<TurnOutcome> {
  const turn = new TurnState(input.userMessage);
  for (;;) {
    if (input.signal?.aborted) return turn.end('cancelled');
    const mustAnswer = stepLimitReached(input.limits, turn.steps);
    input.onEvent?.({ type: 'model_call', stepsSoFar: turn.steps });
    let reply: ModelReply;
    try {
      reply = await input.model.complete(modelRequest(input, turn, mustAnswer));
    } catch (error) {
      return input.signal?.aborted ? turn.end('cancelled') : turn.end('model_error', '', error);
    }
    turn.usage.totalTokens += reply.totalTokens;
    if (reply.toolCalls.length === 0 || mustAnswer) {
      turn.messages.push({ role: 'assistant', content: reply.content });
      return turn.end(mustAnswer && reply.toolCalls.length > 0 ? 'max_steps' : 'answered', reply.content);
    }
    turn.messages.push({ role: 'assistant', content: reply.content === '' ? null : reply.content, tool_calls: reply.toolCalls });
    const stop = await runToolCalls(input, turn, reply);
    if (stop !== undefined) return stop;
    const budget = budgetReached(input.limits, turn.usage);
    if (budget !== undefined) return turn.end(budget);
  }
}

function modelRequest(input: AgentLoopInput, turn: TurnState, mustAnswer: boolean): ModelRequest {
  const answerNow = `The step limit (${input.limits.maxSteps}) is reached: answer now with what you have.`;
  return {
    messages: [
      { role: 'system', content: input.systemPrompt },
      ...toModelMessages([...input.history, ...turn.messages], input.limits.contextTokenBudget),
      ...(mustAnswer ? [{ role: 'system' as const, content: answerNow }] : []),
    ],
    tools: [EXECUTE_TOOL],
    toolChoice: mustAnswer ? 'none' : 'auto',
    ...(input.signal === undefined ? {} : { signal: input.signal }),
    ...(input.streamText === true ? { onText: (text: string) => input.onEvent?.({ type: 'text', text }) } : {}),
  };
}

/** Runs the reply's tool calls in order. Every call gets a tool message, even ones skipped by a stop, so the history stays valid. */
async function runToolCalls(input: AgentLoopInput, turn: TurnState, reply: ModelReply): Promise<TurnOutcome | undefined> {
  let stop: TurnOutcome | undefined;
  for (const call of reply.toolCalls) {
    const answer = (content: string) => turn.messages.push({ role: 'tool', tool_call_id: call.id, content });
    if (stop !== undefined) {
      answer(`Not run: the turn ended (${stop.stopReason}).`);
      continue;
    }
    const budget = budgetReached(input.limits, turn.usage);
    if (budget !== undefined || stepLimitReached(input.limits, turn.steps)) {
      stop = turn.end(budget ?? 'max_steps');
      answer(`Not run: ${budget ?? 'step limit'} reached.`);
      continue;
    }
    stop = await runStep(input, turn, call, reply.content);
  }
  return stop;
}

/** One `execute` call: the step runs in the session, its result goes back to the model as the tool message. */
async function runStep(input: AgentLoopInput, turn: TurnState, call: ToolCall, assistantText: string): Promise<TurnOutcome | undefined> {
  const parsed = parseExecuteArguments(call.function.name, call.function.arguments);
  if ('problem' in parsed) {
    turn.messages.push({ role: 'tool', tool_call_id: call.id, content: parsed.problem });
    return undefined;
  }
  turn.steps += 1;
  const index = turn.steps;
  input.onEvent?.({ type: 'step_started', index, title: stepTitle(assistantText, parsed.code), code: parsed.code, language: parsed.language });
  try {
    const timeoutSec = stepTimeoutSec(input.limits, turn.usage);
    const options = input.signal === undefined ? {} : { signal: input.signal };
    const ran = await input.session.run({ language: 'python', code: parsed.pythonCode, timeoutSec }, options);
    const result = explainBudgetCut(ran, timeoutSec, input.limits);
    turn.usage.sandboxMs += result.durationMs;
    input.onEvent?.({ type: 'step_finished', index, result });
    const { stdout, stderr, error, figures, durationMs } = result;
    const tables = result.displays?.map((display) => display.text);
    turn.messages.push({
      role: 'tool',
      tool_call_id: call.id,
      content: formatStepForModel(result, input.limits.toolOutputChars),
      meta: { step: { code: parsed.code, stdout, stderr, error, figures, durationMs, ...(tables === undefined ? {} : { tables }) } },
    });
    return undefined;
  } catch (error) {
    const cancelled = input.signal?.aborted === true || (error instanceof SandboxError && error.code === 'cancelled');
    const content = cancelled ? 'The user stopped this step before it finished.' : 'The sandbox failed to run this step.';
    turn.messages.push({ role: 'tool', tool_call_id: call.id, content });
    return cancelled ? turn.end('cancelled') : turn.end('sandbox_error', '', error);
  }
}
