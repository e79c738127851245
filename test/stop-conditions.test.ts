/**
 * Stop conditions (agent/stop-conditions.ts) as pure functions, and the agent loop driven by a scripted
 * ChatModel: the loop's boundary without any HTTP.
 */
import { describe, expect, test } from 'vitest';
import { runAgentLoop, type AgentLoopInput } from '../controller/agent/agent-loop.js';
import { ModelError } from '../controller/agent/chat-model.js';
import { budgetReached, explainBudgetCut, stepLimitReached, stepTimeoutSec, type TurnLimits } from '../controller/agent/stop-conditions.js';
import type { StepResult } from '../controller/sandbox/sandbox.js';
import type { Workspace } from '../controller/workspace/workspace.js';
import { executeReply, ScriptedModel } from './helpers/scripted-model.js';
import { ScriptedSandbox } from './helpers/scripted-sandbox.js';

const limits: TurnLimits = { maxSteps: 3, stepTimeoutSec: 60, contextTokenBudget: 100_000, toolOutputChars: 2000 };
const workspace = {} as Workspace; // the scripted sandbox never touches it

describe('stop conditions', () => {
  test('the step limit', () => {
    expect(stepLimitReached(limits, 2)).toBe(false);
    expect(stepLimitReached(limits, 3)).toBe(true);
  });

  test('budgets: tokens first, then sandbox time; none without caps', () => {
    expect(budgetReached(limits, { totalTokens: 1e9, sandboxMs: 1e9 })).toBe(undefined);
    const capped = { ...limits, maxTokens: 100, maxSandboxMs: 10_000 };
    expect(budgetReached(capped, { totalTokens: 99, sandboxMs: 9_999 })).toBe(undefined);
    expect(budgetReached(capped, { totalTokens: 100, sandboxMs: 10_000 })).toBe('token_budget');
    expect(budgetReached(capped, { totalTokens: 0, sandboxMs: 10_000 })).toBe('sandbox_budget');
  });

  test('a step gets what is left of the sandbox time, at least a second, at most STEP_TIMEOUT_SEC', () => {
    expect(stepTimeoutSec(limits, { totalTokens: 0, sandboxMs: 0 })).toBe(60);
    const capped = { ...limits, maxSandboxMs: 90_000 };
    expect(stepTimeoutSec(capped, { totalTokens: 0, sandboxMs: 0 })).toBe(60);
    expect(stepTimeoutSec(capped, { totalTokens: 0, sandboxMs: 75_500 })).toBe(15);
    expect(stepTimeoutSec(capped, { totalTokens: 0, sandboxMs: 95_000 })).toBe(1);
  });

  test('a timeout caused by the budget says so; a plain timeout keeps its message', () => {
    const timedOut = { limit: 'timeout', error: { name: 'StepTimeout', value: 'The step was stopped after 15 s (STEP_TIMEOUT_SEC).', traceback: '' } } as StepResult;
    expect(explainBudgetCut(timedOut, 15, limits).error?.value).toMatch(/sandbox-time budget \(TURN_MAX_SANDBOX_SEC \/ THREAD_MAX_SANDBOX_SEC\) ran out/);
    expect(explainBudgetCut(timedOut, 60, limits)).toBe(timedOut);
  });
});

describe('agent loop with a scripted model', () => {
  const input = (model: ScriptedModel, sandbox: ScriptedSandbox, overrides: Partial<AgentLoopInput> = {}): AgentLoopInput => ({
    model,
    session: sandbox.session(workspace),
    systemPrompt: 'system',
    history: [{ role: 'user', content: 'earlier question' }, { role: 'assistant', content: 'earlier answer' }],
    userMessage: { role: 'user', content: 'question' },
    limits,
    ...overrides,
  });

  test('model, step, model: the history the model sees grows by the turn’s own messages', async () => {
    const model = new ScriptedModel([executeReply('print(6 * 7)', 'Let me compute.'), { content: '42', totalTokens: 5 }]);
    const sandbox = new ScriptedSandbox(() => ({ stdout: '42\n', durationMs: 30 }));
    const outcome = await runAgentLoop(input(model, sandbox));
    model.assertComplete();
    expect(outcome).toMatchObject({ stopReason: 'answered', answer: '42', steps: 1, usage: { totalTokens: 15, sandboxMs: 30 } });
    expect(model.requests.map((request) => request.messages.map((message) => message.role))).toStrictEqual([
      ['system', 'user', 'assistant', 'user'],
      ['system', 'user', 'assistant', 'user', 'assistant', 'tool'],
    ]);
    expect(model.requests.map((request) => request.toolChoice)).toStrictEqual(['auto', 'auto']);
    expect(sandbox.requests.map((step) => step.request)).toStrictEqual([{ language: 'python', code: 'print(6 * 7)', timeoutSec: 60 }]);
  });

  test('at the step limit the model is told to answer and offered no tools', async () => {
    const model = new ScriptedModel([executeReply('1'), executeReply('2'), executeReply('3'), executeReply('4')]);
    const outcome = await runAgentLoop(input(model, new ScriptedSandbox()));
    model.assertComplete();
    expect(outcome.stopReason).toBe('max_steps');
    expect(outcome.steps).toBe(3);
    const last = model.requests.at(-1)!;
    expect(last.toolChoice).toBe('none');
    expect(last.messages.at(-1)).toStrictEqual({ role: 'system', content: 'The step limit (3) is reached: answer now with what you have.' });
  });

  test('a model failure ends the turn as model_error with the error kept; Stop during the call is cancelled', async () => {
    const failure = new ModelError('HTTP 500', { userMessage: 'The model service answered with an error (HTTP 500), even after retries.' });
    const failed = await runAgentLoop(input(new ScriptedModel([failure]), new ScriptedSandbox()));
    expect(failed.stopReason).toBe('model_error');
    expect(failed.error).toBe(failure);

    const controller = new AbortController();
    const model = new ScriptedModel([
      () => {
        controller.abort();
        throw new ModelError('aborted');
      },
    ]);
    expect((await runAgentLoop(input(model, new ScriptedSandbox(), { signal: controller.signal }))).stopReason).toBe('cancelled');
  });

  test('the sandbox-time budget ends the turn after the step that used it up', async () => {
    const model = new ScriptedModel([executeReply('slow()')]);
    const sandbox = new ScriptedSandbox(() => ({ durationMs: 5_000 }));
    const outcome = await runAgentLoop(input(model, sandbox, { limits: { ...limits, maxSandboxMs: 4_000 } }));
    model.assertComplete();
    expect(outcome.stopReason).toBe('sandbox_budget');
    expect(sandbox.requests[0]!.request.timeoutSec, 'the step may not outlast the budget').toBe(4);
  });
});
