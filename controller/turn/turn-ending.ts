import { ModelError } from '../agent/chat-model.js';
import type { TurnOutcome } from '../agent/agent-loop.js';
import type { Usage } from '../agent/stop-conditions.js';
import type { Config } from '../config.js';
import { AppError, describeError } from '../errors.js';
import { SandboxError } from '../sandbox/sandbox.js';
import { countOf } from '../text.js';
import { budgetReachedText } from './budgets.js';

/**
 * How a turn's ending is told: the status headline, the line in the thread, and the note kept in the
 * history so later turns know what happened. Also the two ways a mention can fail on the bot's side.
 */

export interface Ending {
  icon: string;
  headline: string;
  /** A message for the thread besides the answer (why the turn ended early). */
  message?: string;
  /** Recorded in the history (in parentheses, as the assistant) so later turns know what happened; '' for none. */
  historyNote: string;
}

/**
 * `signal`: the turn's; when the bot itself cut the turn short (a shutdown that could not wait for it), the
 * ending says the request was interrupted rather than stopped by someone.
 */
export function describeEnding(outcome: TurnOutcome, config: Config, user: string, used: Usage, signal?: AbortSignal): Ending {
  if (outcome.stopReason === 'cancelled' && signal?.reason instanceof TurnInterruption) {
    return { icon: ':warning:', headline: 'Interrupted', message: INTERRUPTED_TURN.message, historyNote: INTERRUPTED_TURN.historyNote };
  }
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
        message: `:no_entry: I stopped because ${budgetReachedText(config.budgets, used, outcome.usage, 'tokens')}.`,
        historyNote: 'The turn ended at the token budget.',
      };
    case 'sandbox_budget':
      return {
        icon: ':no_entry:',
        headline: 'Sandbox-time budget reached',
        message: `:no_entry: I stopped because ${budgetReachedText(config.budgets, used, outcome.usage, 'sandbox')}.`,
        historyNote: 'The turn ended at the sandbox-time budget.',
      };
    case 'cancelled':
      return {
        icon: ':octagonal_sign:',
        headline: 'Stopped',
        message: `:octagonal_sign: Stopped${outcome.steps > 0 ? ` after ${countOf(outcome.steps, 'step')}` : ''}. Mention me again to continue.`,
        historyNote: `The user <@${user}> or an admin stopped this turn.`,
      };
    case 'model_error':
      return {
        icon: ':warning:',
        headline: 'Model error',
        message: `:warning: ${outcome.error instanceof ModelError ? outcome.error.userMessage : 'The model service failed.'} Your message is saved; mention me again to retry.`,
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

/** A thread over one of its caps is not answered (budgets.ts, threadCapReached). */
export function threadBudgetEnding(capReached: string): { headline: string; message: string; historyNote: string } {
  return {
    headline: ':no_entry: This thread has used its budget.',
    message: `:no_entry: This thread has reached its budget (${capReached}). Start a new thread to continue.`,
    historyNote: 'Not answered: the thread budget was reached.',
  };
}

/** A model turn that failed on the bot's side: the user's message was saved, the status says so. */
export class TurnFailedError extends AppError {
  readonly code = 'turn_failed';
  constructor(cause: unknown) {
    super(describeError(cause), {
      cause,
      userMessage: ':warning: Something went wrong on my side and this turn did not finish. Your message is saved; mention me again to retry.',
    });
  }
}

/**
 * The abort reason of a turn the bot cut short itself: the instance shuts down, or another instance took the
 * thread's lease over (this one stalled past its expiry). Stop by a person aborts without a reason.
 */
export class TurnInterruption extends Error {
  constructor(readonly why: 'shutdown' | 'lease_lost') {
    super(`turn interrupted: ${why}`);
    this.name = 'TurnInterruption';
  }
}

/** A turn that did not finish because the bot went away (a restart, a crash): told by whoever finds it. */
export const INTERRUPTED_TURN = {
  headline: ':warning: Interrupted',
  message: ':warning: I was interrupted (the bot restarted) before I finished this request. Mention me again to run it.',
  historyNote: 'This request was interrupted before it finished: the bot restarted. The user may ask again.',
};

export const FAILED_TURN = { headline: ':warning: Failed', historyNote: 'This turn failed on the bot side before it finished.' };

/** The one line the thread gets when handling a mention failed (the Bot's catch-all). */
export function failureText(error: unknown): string {
  if (error instanceof TurnFailedError) return error.userMessage;
  return ':warning: Something went wrong on my side and this message was not handled. Please try again.';
}
