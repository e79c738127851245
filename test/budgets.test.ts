/** Budgets (turn/budgets.ts): the thread's caps before a turn, the turn's limits, usage kept per thread, the footer. */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { createLogger } from '../controller/logger.js';
import { loadThreadUsage, saveThreadUsage, threadCapReached, turnLimits, usageFooter } from '../controller/turn/budgets.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { testConfig } from './helpers/in-process-bot.js';

describe('budgets', () => {
  test('without caps a turn has only the step, timeout and context limits', () => {
    const config = testConfig({ MAX_STEPS_PER_TURN: '5', STEP_TIMEOUT_SEC: '30', CONTEXT_TOKEN_BUDGET: '8000' });
    expect(turnLimits(config, { totalTokens: 999_999, sandboxMs: 999_999 })).toStrictEqual({
      maxSteps: 5,
      stepTimeoutSec: 30,
      contextTokenBudget: 8000,
      toolOutputChars: 12_000,
      maxTokens: undefined,
      maxSandboxMs: undefined,
    });
    expect(threadCapReached(config.budgets, { totalTokens: 999_999, sandboxMs: 999_999 })).toBe(undefined);
  });

  test('a turn gets the smaller of its own cap and what is left of the thread’s', () => {
    const config = testConfig({ TURN_MAX_TOKENS: '500', THREAD_MAX_TOKENS: '1000', TURN_MAX_SANDBOX_SEC: '60', THREAD_MAX_SANDBOX_SEC: '100' });
    expect(turnLimits(config, { totalTokens: 0, sandboxMs: 0 })).toMatchObject({ maxTokens: 500, maxSandboxMs: 60_000 });
    expect(turnLimits(config, { totalTokens: 800, sandboxMs: 70_000 })).toMatchObject({ maxTokens: 200, maxSandboxMs: 30_000 });
    expect(turnLimits(config, { totalTokens: 5000, sandboxMs: 500_000 })).toMatchObject({ maxTokens: 0, maxSandboxMs: 0 });
  });

  test('a thread that used up a cap is refused before the turn, the cap named as its setting', () => {
    const config = testConfig({ THREAD_MAX_TOKENS: '1000', THREAD_MAX_SANDBOX_SEC: '10' });
    expect(threadCapReached(config.budgets, { totalTokens: 999, sandboxMs: 9_999 })).toBe(undefined);
    expect(threadCapReached(config.budgets, { totalTokens: 1000, sandboxMs: 0 })).toBe('THREAD_MAX_TOKENS=1000 model tokens');
    expect(threadCapReached(config.budgets, { totalTokens: 0, sandboxMs: 10_000 })).toBe('THREAD_MAX_SANDBOX_SEC=10 seconds of sandbox time');
  });

  test('usage adds up per thread across turns', async () => {
    const store = new LocalWorkspaceStore(await mkdtemp(join(tmpdir(), 'oi-budgets-')));
    const workspace = store.open({ team: 'T1', channel: 'C1', threadTs: '1700000000.000001' });
    const log = createLogger({ write: () => {} });
    const first = await loadThreadUsage(workspace);
    expect(first).toStrictEqual({ used: { totalTokens: 0, sandboxMs: 0 }, version: null });
    await saveThreadUsage(workspace, first, { totalTokens: 120, sandboxMs: 1500 }, log);
    const second = await loadThreadUsage(workspace);
    expect(second.used).toStrictEqual({ totalTokens: 120, sandboxMs: 1500 });
    await saveThreadUsage(workspace, second, { totalTokens: 30, sandboxMs: 500 }, log);
    expect((await loadThreadUsage(workspace)).used).toStrictEqual({ totalTokens: 150, sandboxMs: 2000 });
  });

  test('a usage write that lost a race is logged, not thrown: the turn was already answered', async () => {
    const store = new LocalWorkspaceStore(await mkdtemp(join(tmpdir(), 'oi-budgets-')));
    const workspace = store.open({ team: 'T1', channel: 'C1', threadTs: '1700000000.000002' });
    const warnings: string[] = [];
    const log = createLogger({ write: (line) => warnings.push((JSON.parse(line) as { message: string }).message) });
    const stale = await loadThreadUsage(workspace);
    await saveThreadUsage(workspace, stale, { totalTokens: 1, sandboxMs: 1 }, log);
    await saveThreadUsage(workspace, stale, { totalTokens: 2, sandboxMs: 2 }, log);
    expect(warnings).toStrictEqual(['usage not saved']);
  });

  test('USAGE_FOOTER shows the turn’s tokens and sandbox seconds under the answer', () => {
    expect(usageFooter(testConfig().budgets, { totalTokens: 12_345, sandboxMs: 2_500 })).toBe('');
    expect(usageFooter(testConfig({ USAGE_FOOTER: 'true' }).budgets, { totalTokens: 12_345, sandboxMs: 2_500 })).toBe('\n\n_12,345 tokens · 2.5 s of sandbox_');
  });
});
