import { APIConnectionError, APIError } from 'openai';
import type { TurnOutcome } from '../agent/agent-loop.js';
import type { Config } from '../config.js';
import { SandboxError } from '../sandbox/sandbox.js';

/**
 * How a turn's ending is told: the status headline, the line in the thread, and the note kept in the
 * history so later turns know what happened.
 */

/** Tokens and sandbox time a thread has used so far (for the per-thread budget). */
export interface Usage {
  totalTokens: number;
  sandboxMs: number;
}

export interface Ending {
  icon: string;
  headline: string;
  /** A message for the thread besides the answer (why the turn ended early). */
  message?: string;
  /** Recorded in the history so later turns know what happened. */
  historyNote: string;
}

export function describeOutcome(outcome: TurnOutcome, config: Config, user: string, used: Usage): Ending {
  switch (outcome.stopReason) {
    case 'answered':
      return { icon: ':white_check_mark:', headline: 'Done', historyNote: '' };
    case 'max_steps':
      return {
        icon: ':warning:',
        headline: 'Step limit reached',
        message: `:warning: I stopped after ${config.limits.maxStepsPerTurn} steps (MAX_STEPS_PER_TURN). Mention me again to continue from here.`,
        historyNote: 'The turn ended at the step limit.',
      };
    case 'token_budget':
      return {
        icon: ':no_entry:',
        headline: 'Token budget reached',
        message: `:no_entry: I stopped because ${budgetReached(config, used, outcome.usage, 'tokens')}.`,
        historyNote: 'The turn ended at the token budget.',
      };
    case 'sandbox_budget':
      return {
        icon: ':no_entry:',
        headline: 'Sandbox-time budget reached',
        message: `:no_entry: I stopped because ${budgetReached(config, used, outcome.usage, 'sandbox')}.`,
        historyNote: 'The turn ended at the sandbox-time budget.',
      };
    case 'cancelled':
      return {
        icon: ':octagonal_sign:',
        headline: 'Stopped',
        message: `:octagonal_sign: Stopped${outcome.steps > 0 ? ` after ${outcome.steps} step${outcome.steps === 1 ? '' : 's'}` : ''}. Mention me again to continue.`,
        historyNote: `The user <@${user}> or an admin stopped this turn.`,
      };
    case 'model_error':
      return {
        icon: ':warning:',
        headline: 'Model error',
        message: `:warning: ${describeModelError(outcome.error)} Your message is saved; mention me again to retry.`,
        historyNote: 'The turn ended because the model service failed.',
      };
    case 'sandbox_error':
      return {
        icon: ':warning:',
        headline: 'Sandbox error',
        message: `:warning: ${outcome.error instanceof SandboxError ? outcome.error.userMessage : 'The sandbox failed to run the code.'} Mention me again to retry.`,
        historyNote: 'The turn ended because the sandbox failed.',
      };
  }
}

function describeModelError(error: unknown): string {
  if (error instanceof APIConnectionError) return 'I could not reach the model service.';
  if (error instanceof APIError && error.status !== undefined) {
    if (error.status === 429) return 'The model service is rate-limiting or out of quota (HTTP 429), even after retries.';
    if (error.status === 401 || error.status === 403) return `The model service refused the API key (HTTP ${error.status}): an admin should check OPENAI_API_KEY.`;
    return `The model service answered with an error (HTTP ${error.status}), even after retries.`;
  }
  return 'The model service failed.';
}

/** The thread cap this thread has already used up, named as its setting; undefined while within them. */
export function threadCapReached(config: Config, used: Usage): string | undefined {
  const { threadMaxTokens, threadMaxSandboxSec } = config.budgets;
  if (threadMaxTokens !== undefined && used.totalTokens >= threadMaxTokens) return `THREAD_MAX_TOKENS=${threadMaxTokens} model tokens`;
  if (threadMaxSandboxSec !== undefined && used.sandboxMs >= threadMaxSandboxSec * 1000) {
    return `THREAD_MAX_SANDBOX_SEC=${threadMaxSandboxSec} seconds of sandbox time`;
  }
  return undefined;
}

/** Which cap ended the turn, named as its setting: the turn's, the thread's (what it used before counts), or both. */
function budgetReached(config: Config, used: Usage, turn: Usage, kind: 'tokens' | 'sandbox'): string {
  const { budgets } = config;
  const caps =
    kind === 'tokens'
      ? [['TURN_MAX_TOKENS', budgets.turnMaxTokens, turn.totalTokens], ['THREAD_MAX_TOKENS', budgets.threadMaxTokens, used.totalTokens + turn.totalTokens]] as const
      : [['TURN_MAX_SANDBOX_SEC', budgets.turnMaxSandboxSec, turn.sandboxMs / 1000], ['THREAD_MAX_SANDBOX_SEC', budgets.threadMaxSandboxSec, (used.sandboxMs + turn.sandboxMs) / 1000]] as const;
  const reached = caps.filter(([, cap, value]) => cap !== undefined && value >= cap).map(([name, cap]) => `${name}=${cap}`);
  const what = kind === 'tokens' ? 'model-token budget' : 'sandbox-time budget';
  if (reached.length === 0) return `the ${what} was reached`; // not expected: runTurn stops only at a cap
  const whose = reached.some((name) => name.startsWith('THREAD')) ? 'this thread' : 'this turn';
  return `${whose} reached its ${what} (${reached.join(', ')})`;
}
