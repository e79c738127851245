/** How a turn's ending is told (turn/turn-ending.ts): status headline, thread line and history note per stop reason. */
import { describe, expect, test } from 'vitest';
import type { TurnOutcome } from '../controller/agent/agent-loop.js';
import { ModelError } from '../controller/agent/chat-model.js';
import { SandboxError } from '../controller/sandbox/sandbox.js';
import { describeEnding, failureText, threadBudgetEnding, TurnFailedError } from '../controller/turn/turn-ending.js';
import { testConfig } from './helpers/in-process-bot.js';

const outcome = (overrides: Partial<TurnOutcome>): TurnOutcome => ({
  stopReason: 'answered',
  answer: '',
  messages: [],
  steps: 0,
  usage: { totalTokens: 0, sandboxMs: 0 },
  ...overrides,
});
const fresh = { totalTokens: 0, sandboxMs: 0 };

describe('turn endings', () => {
  const config = testConfig({ MAX_STEPS_PER_TURN: '7', TURN_MAX_TOKENS: '100', THREAD_MAX_TOKENS: '1000', TURN_MAX_SANDBOX_SEC: '30' });

  test('an answered turn says Done and leaves no note', () => {
    expect(describeEnding(outcome({}), config, 'U1', fresh)).toStrictEqual({ icon: ':white_check_mark:', headline: 'Done', historyNote: '' });
  });

  test('the step limit names MAX_STEPS_PER_TURN with its value', () => {
    const ending = describeEnding(outcome({ stopReason: 'max_steps', steps: 7 }), config, 'U1', fresh);
    expect(ending.headline).toBe('Step limit reached');
    expect(ending.message).toBe(':warning: I stopped after 7 steps (MAX_STEPS_PER_TURN). Mention me again to continue from here.');
    expect(ending.historyNote).toBe('The turn ended at the step limit.');
  });

  test('a budget ending names the cap that was reached: the turn’s, or the thread’s when earlier turns count', () => {
    const turnCap = describeEnding(outcome({ stopReason: 'token_budget', usage: { totalTokens: 120, sandboxMs: 0 } }), config, 'U1', fresh);
    expect(turnCap.message).toBe(':no_entry: I stopped because this turn reached its model-token budget (TURN_MAX_TOKENS=100).');
    const threadCap = describeEnding(outcome({ stopReason: 'token_budget', usage: { totalTokens: 50, sandboxMs: 0 } }), config, 'U1', { totalTokens: 990, sandboxMs: 0 });
    expect(threadCap.message).toBe(':no_entry: I stopped because this thread reached its model-token budget (THREAD_MAX_TOKENS=1000).');
    const sandbox = describeEnding(outcome({ stopReason: 'sandbox_budget', usage: { totalTokens: 0, sandboxMs: 31_000 } }), config, 'U1', fresh);
    expect(sandbox.headline).toBe('Sandbox-time budget reached');
    expect(sandbox.message).toBe(':no_entry: I stopped because this turn reached its sandbox-time budget (TURN_MAX_SANDBOX_SEC=30).');
  });

  test('Stop counts the steps taken and records who may have stopped it', () => {
    expect(describeEnding(outcome({ stopReason: 'cancelled', steps: 1 }), config, 'U1', fresh).message).toBe(':octagonal_sign: Stopped after 1 step. Mention me again to continue.');
    const none = describeEnding(outcome({ stopReason: 'cancelled', steps: 0 }), config, 'U1', fresh);
    expect(none.message).toBe(':octagonal_sign: Stopped. Mention me again to continue.');
    expect(none.historyNote).toBe('The user <@U1> or an admin stopped this turn.');
  });

  test('model and sandbox failures show their user message, never internal details', () => {
    const model = describeEnding(outcome({ stopReason: 'model_error', error: new ModelError('ECONNREFUSED 10.0.0.1', { userMessage: 'I could not reach the model service.' }) }), config, 'U1', fresh);
    expect(model.message).toBe(':warning: I could not reach the model service. Your message is saved; mention me again to retry.');
    const unknown = describeEnding(outcome({ stopReason: 'model_error', error: new Error('socket hang up') }), config, 'U1', fresh);
    expect(unknown.message).toBe(':warning: The model service failed. Your message is saved; mention me again to retry.');
    const sandbox = describeEnding(outcome({ stopReason: 'sandbox_error', error: new SandboxError('runner_failed', 'exit 2: traceback', { userMessage: 'The code sandbox failed to run this step.' }) }), config, 'U1', fresh);
    expect(sandbox.message).toBe(':warning: The code sandbox failed to run this step. Mention me again to retry.');
    expect(sandbox.message).not.toMatch(/traceback/);
  });

  test('a thread over its budget is refused with the setting named', () => {
    expect(threadBudgetEnding('THREAD_MAX_TOKENS=10 model tokens')).toStrictEqual({
      headline: ':no_entry: This thread has used its budget.',
      message: ':no_entry: This thread has reached its budget (THREAD_MAX_TOKENS=10 model tokens). Start a new thread to continue.',
      historyNote: 'Not answered: the thread budget was reached.',
    });
  });

  test('a failed turn and a failed command are told differently; the cause never reaches the thread', () => {
    const turn = failureText(new TurnFailedError(new Error('EACCES /data/threads')));
    expect(turn).toBe(':warning: Something went wrong on my side and this turn did not finish. Your message is saved; mention me again to retry.');
    expect(failureText(new Error('EACCES /data/threads'))).toBe(':warning: Something went wrong on my side and this message was not handled. Please try again.');
  });
});
