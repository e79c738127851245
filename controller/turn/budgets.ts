import type { TurnLimits, Usage } from '../agent/stop-conditions.js';
import type { Config } from '../config.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Workspace } from '../workspace/workspace.js';

/**
 * Budgets (TURN_MAX_TOKENS, THREAD_MAX_TOKENS, TURN_MAX_SANDBOX_SEC, THREAD_MAX_SANDBOX_SEC, USAGE_FOOTER):
 * what a thread has used is kept in its controller state (`usage`); before a turn a thread over its caps is
 * refused (threadCapReached); during a turn the agent loop stops at what is left of the turn's and the
 * thread's caps (turnLimits -> agent/stop-conditions.ts); after it the turn's usage is added.
 */

const USAGE_STATE = 'usage';
/** Characters of one step's output the model reads back (head and tail). */
const TOOL_OUTPUT_CHARS = 12_000;

type Budgets = Config['budgets'];

/** What a thread has used before this turn, and the version of that record (for a conditional write). */
export interface ThreadUsage {
  used: Usage;
  version: string | null;
}

export async function loadThreadUsage(workspace: Workspace): Promise<ThreadUsage> {
  const state = await workspace.readState<Usage>(USAGE_STATE);
  return { used: state?.value ?? { totalTokens: 0, sandboxMs: 0 }, version: state?.version ?? null };
}

/** Adds a turn's usage to the thread's; a failure is logged, never fatal to the turn. */
export async function saveThreadUsage(workspace: Workspace, thread: ThreadUsage, turn: Usage, log: Logger): Promise<void> {
  const total = { totalTokens: thread.used.totalTokens + turn.totalTokens, sandboxMs: thread.used.sandboxMs + turn.sandboxMs };
  await workspace.writeState(USAGE_STATE, total, thread.version).catch((error: unknown) => log.warn('usage not saved', { error: describeError(error) }));
}

/** The thread cap this thread has already used up, named as its setting; undefined while within them. */
export function threadCapReached(budgets: Budgets, used: Usage): string | undefined {
  const { threadMaxTokens, threadMaxSandboxSec } = budgets;
  if (threadMaxTokens !== undefined && used.totalTokens >= threadMaxTokens) return `THREAD_MAX_TOKENS=${threadMaxTokens} model tokens`;
  if (threadMaxSandboxSec !== undefined && used.sandboxMs >= threadMaxSandboxSec * 1000) {
    return `THREAD_MAX_SANDBOX_SEC=${threadMaxSandboxSec} seconds of sandbox time`;
  }
  return undefined;
}

/** The limits of this turn: the configured ones, with the caps reduced by what the thread used before. */
export function turnLimits(config: Config, used: Usage): TurnLimits {
  const { budgets, limits } = config;
  const seconds = (value: number | undefined) => (value === undefined ? undefined : value * 1000);
  return {
    maxSteps: limits.maxStepsPerTurn,
    stepTimeoutSec: limits.stepTimeoutSec,
    contextTokenBudget: limits.contextTokenBudget,
    toolOutputChars: TOOL_OUTPUT_CHARS,
    maxTokens: smallest(budgets.turnMaxTokens, remaining(budgets.threadMaxTokens, used.totalTokens)),
    maxSandboxMs: smallest(seconds(budgets.turnMaxSandboxSec), remaining(seconds(budgets.threadMaxSandboxSec), used.sandboxMs)),
  };
}

/** Which cap ended the turn, named as its setting: the turn's, the thread's (what it used before counts), or both. */
export function budgetReachedText(budgets: Budgets, used: Usage, turn: Usage, kind: 'tokens' | 'sandbox'): string {
  const caps =
    kind === 'tokens'
      ? [['TURN_MAX_TOKENS', budgets.turnMaxTokens, turn.totalTokens], ['THREAD_MAX_TOKENS', budgets.threadMaxTokens, used.totalTokens + turn.totalTokens]] as const
      : [['TURN_MAX_SANDBOX_SEC', budgets.turnMaxSandboxSec, turn.sandboxMs / 1000], ['THREAD_MAX_SANDBOX_SEC', budgets.threadMaxSandboxSec, (used.sandboxMs + turn.sandboxMs) / 1000]] as const;
  const reached = caps.filter(([, cap, value]) => cap !== undefined && value >= cap).map(([name, cap]) => `${name}=${cap}`);
  const what = kind === 'tokens' ? 'model-token budget' : 'sandbox-time budget';
  if (reached.length === 0) return `the ${what} was reached`; // not expected: the loop stops only at a cap
  const whose = reached.some((name) => name.startsWith('THREAD')) ? 'this thread' : 'this turn';
  return `${whose} reached its ${what} (${reached.join(', ')})`;
}

/** USAGE_FOOTER: the turn's tokens and sandbox time under the answer ('' when off). */
export function usageFooter(budgets: Budgets, turn: Usage): string {
  if (!budgets.usageFooter) return '';
  return `\n\n_${turn.totalTokens.toLocaleString('en-US')} tokens · ${(turn.sandboxMs / 1000).toFixed(1)} s of sandbox_`;
}

function remaining(cap: number | undefined, used: number): number | undefined {
  return cap === undefined ? undefined : Math.max(0, cap - used);
}

function smallest(...values: (number | undefined)[]): number | undefined {
  const defined = values.filter((value): value is number => value !== undefined);
  return defined.length === 0 ? undefined : Math.min(...defined);
}
