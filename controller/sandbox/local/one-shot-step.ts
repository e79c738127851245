import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { constants } from 'node:os';
import { describeError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { boundStepResult } from '../bound-result.js';
import { stepRequestJson, stoppedStepResult } from '../runner-protocol.js';
import { SandboxError, type ResourceLimits, type RunOptions, type StepRequest, type StepResult } from '../sandbox.js';
import type { JailRuntime } from './jail-runtime.js';
import type { JailSlot } from './jail-slots.js';
import { handOverWorkspace, killProcessesOf } from './sandbox-user.js';
import { stepBudget } from './step-budget.js';
import { interpretExit, prepareStepDirectory, readPartialOutput, readStepResult, removeStepDirectory, type RunnerExit } from './step-files.js';
import { stoppedResult } from './stopped-step.js';
import { WorkspaceWatcher } from './workspace-quota.js';

/**
 * One step in a fresh runner (SANDBOX_SESSION=off, and the per-step mode behind PerStepSession): the
 * same jail slot as a session (cgroup, network namespace, seccomp, the thread's uid), the workspace quota
 * watched while it runs, and nothing of the step left running when its result is read.
 */

export interface OneShotContext {
  runtime: JailRuntime;
  limits: ResourceLimits;
  maxOutputBytes: number;
  workspaceMaxBytes: number;
  logger: Logger;
}

/** The runner stops the user's code itself at timeoutSec; this is the backstop for code stuck in C. */
const KILL_GRACE_MS = 3_000;
const STDERR_TAIL = 4_000;
const STOPPED_NOTE = 'The step was stopped before it could list the files it changed or save its Python state.';

type Stop = 'timeout' | 'abort' | 'quota';
interface Exit extends Omit<RunnerExit, 'stoppedBy'> {
  stoppedBy?: Stop;
  quotaUsed: number;
}

export async function runOneShotStep(context: OneShotContext, workspaceDir: string, request: StepRequest, options: RunOptions): Promise<StepResult> {
  if (options.signal?.aborted) throw new SandboxError('cancelled', 'step cancelled before it started');
  await mkdir(workspaceDir, { recursive: true });
  const budget = await stepBudget(workspaceDir, { quotaBytes: context.workspaceMaxBytes, maxFileMb: context.limits.maxFileMb });
  const stepId = randomUUID();
  const limits = { ...context.limits, maxFileMb: budget.fileLimitMb };
  const stepDir = await prepareStepDirectory(workspaceDir, stepId, stepRequestJson(stepId, request, limits, context.maxOutputBytes));
  try {
    const user = context.runtime.userFor(workspaceDir);
    if (user !== undefined) await handOverWorkspace(workspaceDir, user);
    const slot = await context.runtime.takeSlot();
    const started = performance.now();
    const child = context.runtime.spawnRunner(slot, workspaceDir, ['--step', stepId]);
    child.stdin?.end(); // a one-shot runner reads its request file, not stdin
    child.stdout?.resume(); // and says nothing worth keeping there
    const exit = await waitForRunner(child, slot, { timeoutMs: request.timeoutSec * 1000 + KILL_GRACE_MS, signal: options.signal, workspaceDir, stopAtBytes: budget.stopAtBytes });
    const durationMs = performance.now() - started;
    // Nothing of the step may run while its result is read: bwrap's pid namespace went with the runner;
    // the group is emptied anyway, and a plain process's uid swept.
    const outOfMemory = slot.cgroup !== undefined && slot.cgroup.oomKills() > 0;
    await slot.cgroup?.kill();
    if (context.runtime.mode === undefined && user !== undefined) await killProcessesOf(user);
    context.runtime.releaseSlot(slot).catch((error: unknown) => context.logger.warn('sandbox slot not released', { error: describeError(error) }));
    if (exit.stoppedBy === 'abort') throw new SandboxError('cancelled', `step ${stepId} cancelled`);
    return await readOutcome(context, { workspaceDir, stepDir, stepId, request, exit, durationMs, outOfMemory, quotaBytes: budget.stopAtBytes });
  } finally {
    await removeStepDirectory(workspaceDir, stepDir).catch((error: unknown) =>
      context.logger.warn('step folder not removed', { stepId, error: describeError(error) }),
    );
  }
}

async function readOutcome(
  context: OneShotContext,
  step: { workspaceDir: string; stepDir: string; stepId: string; request: StepRequest; exit: Exit; durationMs: number; outOfMemory: boolean; quotaBytes: number },
): Promise<StepResult> {
  const { exit, stepId } = step;
  const read = exit.stoppedBy === undefined ? await readStepResult(step.workspaceDir, step.stepDir) : undefined;
  if (read !== undefined && read !== 'too_large') {
    return boundStepResult({ ...read, exitCode: exit.code ?? 0 }, { maxOutputBytes: context.maxOutputBytes, durationMs: step.durationMs });
  }
  const output = await readPartialOutput(step.workspaceDir, step.stepDir, context.maxOutputBytes);
  const common = { stepId, limits: context.limits, timeoutSec: step.request.timeoutSec, durationMs: step.durationMs, exitCode: exit.code ?? 128, output };
  if (read === 'too_large' || exit.stoppedBy === 'quota') {
    return stoppedResult({
      ...common,
      cause: read === 'too_large' ? 'protocol' : 'quota',
      limit: undefined,
      quota: { usedBytes: exit.quotaUsed, quotaBytes: step.quotaBytes },
      endDescription: '',
      note: STOPPED_NOTE,
    });
  }
  const interpreted = exit.stoppedBy === 'timeout' ? 'timeout' : await interpretExit(step.stepDir, { ...exit, stoppedBy: undefined });
  // With a cgroup the kernel's OOM count tells a memory kill from any other SIGKILL.
  const limit = step.outOfMemory ? 'memory' : context.runtime.hasCgroups && interpreted === 'memory' ? undefined : interpreted;
  const signal = exit.signal ?? (exit.code !== null && exit.code > 128 ? signalName(exit.code - 128) : undefined);
  if (limit === undefined && signal !== undefined) {
    // Killed, not by a limit (the code killed itself, or an operator): data for the model, not a crash.
    return stoppedResult({ ...common, cause: undefined, limit: undefined, endDescription: `killed by ${signal}`, oneShot: true, note: STOPPED_NOTE });
  }
  if (limit === undefined) {
    const status = `exit status ${exit.code}`;
    throw new SandboxError('runner_failed', `runner.py failed for step ${stepId} (${status}): ${exit.stderrTail.trim()}`, {
      userMessage: 'The code sandbox failed to run this step.',
    });
  }
  return stoppedStepResult({ ...common, durationMs: Math.round(step.durationMs), limit, note: STOPPED_NOTE });
}

/** Waits for the runner to exit; stops it (the whole slot) at the timeout, on abort, or over the quota. */
function waitForRunner(
  child: ChildProcess,
  slot: JailSlot,
  options: { timeoutMs: number; signal?: AbortSignal; workspaceDir: string; stopAtBytes: number },
): Promise<Exit> {
  return new Promise((resolve, reject) => {
    let stderrTail = '';
    let stoppedBy: Stop | undefined;
    let quotaUsed = 0;
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL)));
    const stop = (reason: Stop) => {
      stoppedBy ??= reason;
      if (slot.cgroup !== undefined) void slot.cgroup.kill();
      else if (child.pid !== undefined) killGroup(child.pid);
    };
    const timer = setTimeout(() => stop('timeout'), options.timeoutMs);
    const onAbort = () => stop('abort');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const watcher = new WorkspaceWatcher(options.workspaceDir, options.stopAtBytes, (used) => {
      quotaUsed = used;
      stop('quota');
    }).start();
    const finish = () => {
      clearTimeout(timer);
      watcher.stop();
      options.signal?.removeEventListener('abort', onAbort);
    };
    child.once('error', (error) => {
      finish();
      reject(new SandboxError('start_failed', `could not start the runner: ${error.message}`, { cause: error }));
    });
    child.once('exit', (code, signal) => {
      finish();
      if (child.pid !== undefined) killGroup(child.pid); // a plain process's children
      setImmediate(() => child.stderr?.destroy()); // leftovers could hold stderr open
      resolve({ code, signal, stoppedBy, stderrTail, quotaUsed });
    });
  });
}

function signalName(number: number): string | undefined {
  return Object.entries(constants.signals).find(([, value]) => value === number)?.[0];
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
