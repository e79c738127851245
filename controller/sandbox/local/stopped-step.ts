import type { ResourceLimits, StepLimitKind, StepResult } from '../sandbox.js';
import { quotaExceededMessage } from './workspace-quota.js';

/**
 * The result of a session step that ended without the runner's result (issue 13): the controller
 * stopped it (timeout, workspace quota, a reply that broke the protocol) or the runner died (a limit
 * of the kernel, or killed). What the step had printed is kept; the model is told in one sentence.
 */

export type StopCause = 'timeout' | 'abort' | 'quota' | 'protocol';

export interface StoppedStepOptions {
  stepId: string;
  cause: StopCause | undefined;
  /** The limit read from the runner's exit (signal, marker file, cgroup OOM count). */
  limit: StepLimitKind | undefined;
  limits: ResourceLimits;
  timeoutSec: number;
  durationMs: number;
  exitCode: number;
  output: { stdout: string; stderr: string; truncated: boolean };
  quota?: { usedBytes: number; quotaBytes: number };
  /** How the runner ended (signal or status, last line of its stderr). */
  endDescription: string;
  tooLargeMessage: string;
}

function describe(options: StoppedStepOptions): { name: string; value: string; limit?: StepLimitKind } {
  const { limits } = options;
  if (options.cause === 'timeout') return { name: 'StepTimeout', value: `The step was stopped after ${options.timeoutSec} s (STEP_TIMEOUT_SEC).`, limit: 'timeout' };
  if (options.cause === 'quota' && options.quota !== undefined) {
    // 'workspace' joins StepLimitKind when the session is wired into the restructured sandbox seam.
    return { name: 'WorkspaceFull', value: quotaExceededMessage(options.quota.usedBytes, options.quota.quotaBytes), limit: 'workspace' as unknown as StepLimitKind };
  }
  if (options.cause === 'protocol') return { name: 'ResultRefused', value: options.tooLargeMessage };
  switch (options.limit) {
    case 'memory':
      return { name: 'LimitExceeded', value: `The step was killed, most likely out of memory: memory limit (SANDBOX_MEMORY_MB=${limits.memoryMb}).`, limit: 'memory' };
    case 'cpu':
      return { name: 'LimitExceeded', value: `The step used its CPU time limit (SANDBOX_CPU_SEC=${limits.cpuSec} s) and was stopped.`, limit: 'cpu' };
    case 'file_size':
      return { name: 'LimitExceeded', value: `A file grew past the file size limit (SANDBOX_MAX_FILE_MB=${limits.maxFileMb}).`, limit: 'file_size' };
    case 'timeout':
      return { name: 'StepTimeout', value: `The step was stopped after ${options.timeoutSec} s (STEP_TIMEOUT_SEC).`, limit: 'timeout' };
    default:
      return { name: 'SessionEnded', value: `The sandbox session ended during this step (${options.endDescription}).` };
  }
}

export function stoppedResult(options: StoppedStepOptions): StepResult {
  const { name, value, limit } = describe(options);
  return {
    stepId: options.stepId,
    exitCode: options.exitCode,
    stdout: options.output.stdout,
    stderr: options.output.stderr,
    outputTruncated: options.output.truncated,
    error: { name, value, traceback: '' },
    durationMs: Math.round(options.durationMs),
    figures: [],
    files: [],
    unsaved: [],
    notes: ['The sandbox session was ended with this step: the next step starts a new one with the variables saved after the previous step.'],
    ...(limit === undefined ? {} : { limit }),
  };
}
