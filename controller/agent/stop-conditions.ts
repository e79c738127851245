import type { StepResult } from '../sandbox/sandbox.js';

/**
 * When a turn must stop, as small pure predicates beside the loop (agent-loop.ts): the step limit
 * (MAX_STEPS_PER_TURN), the token cap and the sandbox-time cap (what is left of the turn's and the thread's
 * budgets: turn/budgets.ts computes them before the turn).
 */

export interface TurnLimits {
  maxSteps: number;
  stepTimeoutSec: number;
  contextTokenBudget: number;
  toolOutputChars: number;
  /** Caps for this turn (already reduced by what the thread used before), undefined = none. */
  maxTokens?: number;
  maxSandboxMs?: number;
}

/** Model tokens and sandbox time used (by a turn, or by a thread so far). */
export interface Usage {
  totalTokens: number;
  sandboxMs: number;
}

/** True when no further step may run: the model must answer with what it has. */
export function stepLimitReached(limits: TurnLimits, steps: number): boolean {
  return steps >= limits.maxSteps;
}

/** The budget this usage has reached, if any. */
export function budgetReached(limits: TurnLimits, usage: Usage): 'token_budget' | 'sandbox_budget' | undefined {
  if (limits.maxTokens !== undefined && usage.totalTokens >= limits.maxTokens) return 'token_budget';
  if (limits.maxSandboxMs !== undefined && usage.sandboxMs >= limits.maxSandboxMs) return 'sandbox_budget';
  return undefined;
}

/** A step may not outlast the sandbox-time budget: it is cut when what is left of the budget is used. */
export function stepTimeoutSec(limits: TurnLimits, usage: Usage): number {
  if (limits.maxSandboxMs === undefined) return limits.stepTimeoutSec;
  return Math.min(limits.stepTimeoutSec, Math.max(1, Math.ceil((limits.maxSandboxMs - usage.sandboxMs) / 1000)));
}

/** A step cut short by the sandbox-time budget says so, rather than blaming STEP_TIMEOUT_SEC. */
export function explainBudgetCut(result: StepResult, timeoutSec: number, limits: TurnLimits): StepResult {
  if (timeoutSec >= limits.stepTimeoutSec || result.limit !== 'timeout' || result.error === null) return result;
  return {
    ...result,
    error: { ...result.error, value: 'The step was stopped because the sandbox-time budget (TURN_MAX_SANDBOX_SEC / THREAD_MAX_SANDBOX_SEC) ran out.' },
  };
}
