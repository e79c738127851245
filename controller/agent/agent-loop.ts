import type OpenAI from 'openai';
import type { ChatCompletionMessageToolCall, ChatCompletionTool } from 'openai/resources/chat/completions';
import type { Logger } from '../logger.js';
import { SandboxError, type Sandbox, type StepResult } from '../sandbox/sandbox.js';
import type { Workspace } from '../workspace/workspace.js';
import { toModelMessages, type HistoryMessage } from './history.js';
import { parseExecuteArguments, stepTitle } from './execute-tool.js';
import { formatStepForModel } from './tool-output.js';

/**
 * One turn: model → execute → model … until the model answers, a limit is reached or the turn is
 * stopped. Everything a turn touches is in its arguments: two turns never share state.
 */

export const EXECUTE_TOOL: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'execute',
    description: "Run code in this thread's sandbox (working directory: the thread's workspace). Returns stdout, errors and files written.",
    parameters: {
      type: 'object',
      properties: {
        language: { type: 'string', enum: ['python', 'shell'], description: 'python (default) or shell' },
        code: { type: 'string', description: 'The code to run' },
      },
      required: ['language', 'code'],
    },
  },
};

export interface TurnLimits {
  maxSteps: number;
  stepTimeoutSec: number;
  contextTokenBudget: number;
  toolOutputChars: number;
  /** Caps for this turn (already reduced by what the thread used before), undefined = none. */
  maxTokens?: number;
  maxSandboxMs?: number;
}

export type AgentEvent =
  | { type: 'model_call'; stepsSoFar: number }
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
  usage: { totalTokens: number; sandboxMs: number };
  /** The error that ended the turn, for stopReason model_error / sandbox_error. */
  error?: unknown;
}

export interface TurnInput {
  openai: OpenAI;
  model: string;
  sandbox: Sandbox;
  workspace: Workspace;
  systemPrompt: string;
  history: readonly HistoryMessage[];
  userMessage: HistoryMessage;
  limits: TurnLimits;
  logger: Logger;
  signal?: AbortSignal;
  onEvent?: (event: AgentEvent) => void;
}

export async function runTurn(input: TurnInput): Promise<TurnOutcome> {
  const { limits, signal } = input;
  const messages: HistoryMessage[] = [input.userMessage];
  const usage = { totalTokens: 0, sandboxMs: 0 };
  let steps = 0;
  const end = (stopReason: StopReason, answer = '', error?: unknown): TurnOutcome => ({ stopReason, answer, messages, steps, usage, error });

  for (;;) {
    if (signal?.aborted) return end('cancelled');
    const outOfSteps = steps >= limits.maxSteps;
    input.onEvent?.({ type: 'model_call', stepsSoFar: steps });
    let completion: OpenAI.Chat.Completions.ChatCompletion;
    // The openai client never removes its listener from the signal it gets; give each request its
    // own signal linked to the turn's, so a long turn does not pile listeners on the turn's signal.
    const requestSignal = linkedSignal(signal);
    try {
      completion = await input.openai.chat.completions.create(
        {
          model: input.model,
          messages: [
            { role: 'system', content: input.systemPrompt },
            ...toModelMessages([...input.history, ...messages], limits.contextTokenBudget),
            ...(outOfSteps
              ? [{ role: 'system' as const, content: `The step limit (${limits.maxSteps}) is reached: answer now with what you have.` }]
              : []),
          ],
          tools: [EXECUTE_TOOL],
          tool_choice: outOfSteps ? 'none' : 'auto',
        },
        { signal: requestSignal.signal },
      );
    } catch (error) {
      if (signal?.aborted) return end('cancelled');
      return end('model_error', '', error);
    } finally {
      requestSignal.unlink();
    }
    usage.totalTokens += completion.usage?.total_tokens ?? 0;
    const reply = completion.choices[0]?.message;
    const toolCalls = (reply?.tool_calls ?? []).filter(
      (call): call is ChatCompletionMessageToolCall & { type: 'function' } => call.type === 'function',
    );
    const content = reply?.content ?? '';

    if (toolCalls.length === 0 || outOfSteps) {
      messages.push({ role: 'assistant', content });
      return end(outOfSteps && toolCalls.length > 0 ? 'max_steps' : 'answered', content);
    }
    messages.push({ role: 'assistant', content: content === '' ? null : content, tool_calls: toolCalls });

    // Every tool call gets a tool message, even ones skipped by a stop, so the history stays valid.
    let stop: TurnOutcome | undefined;
    for (const call of toolCalls) {
      if (stop !== undefined) {
        messages.push({ role: 'tool', tool_call_id: call.id, content: `Not run: the turn ended (${stop.stopReason}).` });
        continue;
      }
      const budgetStop = budgetExceeded(limits, usage);
      if (budgetStop !== undefined || steps >= limits.maxSteps) {
        stop = end(budgetStop ?? 'max_steps');
        messages.push({ role: 'tool', tool_call_id: call.id, content: `Not run: ${budgetStop ?? 'step limit'} reached.` });
        continue;
      }
      const parsed = parseExecuteArguments(call.function.name, call.function.arguments);
      if ('problem' in parsed) {
        messages.push({ role: 'tool', tool_call_id: call.id, content: parsed.problem });
        continue;
      }
      steps += 1;
      input.onEvent?.({ type: 'step_started', index: steps, title: stepTitle(content, parsed.code), code: parsed.code, language: parsed.language });
      try {
        const timeoutSec = stepTimeoutSec(limits, usage);
        const result = explainBudgetCut(
          await input.sandbox.run(input.workspace, { language: 'python', code: parsed.pythonCode, timeoutSec }, { signal }),
          timeoutSec < limits.stepTimeoutSec,
        );
        usage.sandboxMs += result.durationMs;
        input.onEvent?.({ type: 'step_finished', index: steps, result });
        messages.push({
          role: 'tool',
          tool_call_id: call.id,
          content: formatStepForModel(result, limits.toolOutputChars),
          meta: {
            step: {
              code: parsed.code,
              stdout: result.stdout,
              stderr: result.stderr,
              error: result.error,
              figures: result.figures,
              durationMs: result.durationMs,
            },
          },
        });
      } catch (error) {
        const cancelled = signal?.aborted === true || (error instanceof SandboxError && error.code === 'cancelled');
        messages.push({
          role: 'tool',
          tool_call_id: call.id,
          content: cancelled ? 'The user stopped this step before it finished.' : 'The sandbox failed to run this step.',
        });
        stop = cancelled ? end('cancelled') : end('sandbox_error', '', error);
      }
    }
    if (stop !== undefined) return stop;
    const budgetStop = budgetExceeded(limits, usage);
    if (budgetStop !== undefined) return end(budgetStop);
  }
}

function budgetExceeded(limits: TurnLimits, usage: TurnOutcome['usage']): StopReason | undefined {
  if (limits.maxTokens !== undefined && usage.totalTokens >= limits.maxTokens) return 'token_budget';
  if (limits.maxSandboxMs !== undefined && usage.sandboxMs >= limits.maxSandboxMs) return 'sandbox_budget';
  return undefined;
}

/** A step may not outlast the sandbox-time budget: it is cut when what is left of the budget is used. */
function stepTimeoutSec(limits: TurnLimits, usage: TurnOutcome['usage']): number {
  if (limits.maxSandboxMs === undefined) return limits.stepTimeoutSec;
  return Math.min(limits.stepTimeoutSec, Math.max(1, Math.ceil((limits.maxSandboxMs - usage.sandboxMs) / 1000)));
}

/** A step cut short by the sandbox-time budget says so, rather than blaming STEP_TIMEOUT_SEC. */
function explainBudgetCut(result: StepResult, cutByBudget: boolean): StepResult {
  if (!cutByBudget || result.limit !== 'timeout' || result.error === null) return result;
  return {
    ...result,
    error: { ...result.error, value: 'The step was stopped because the sandbox-time budget (TURN_MAX_SANDBOX_SEC / THREAD_MAX_SANDBOX_SEC) ran out.' },
  };
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
