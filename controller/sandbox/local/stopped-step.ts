import { RESULT_TOO_LARGE_MESSAGE } from '../bound-result.js';
import { stoppedStepResult } from '../runner-protocol.js';
import type { ResourceLimits, StepLimitKind, StepResult } from '../sandbox.js';
import { quotaExceededMessage } from '../../workspace/quota.js';

/**
 * The result of a step that ended without the runner's result (issue 13): the controller stopped it
 * (timeout, workspace quota, a reply that broke the protocol) or the runner died (a limit of the
 * kernel, or killed). What the step had printed is kept; the model is told in one sentence, with the
 * same wording as a one-shot step for the same limit.
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
  /** A one-shot step's runner rather than a session's. */
  oneShot?: boolean;
  /** What was lost, for the model. */
  note: string;
}

export function stoppedResult(options: StoppedStepOptions): StepResult {
  const common = {
    stepId: options.stepId,
    limits: options.limits,
    timeoutSec: options.timeoutSec,
    durationMs: Math.round(options.durationMs),
    exitCode: options.exitCode,
    output: options.output,
    note: options.note,
  };
  if (options.cause === 'timeout') return stoppedStepResult({ ...common, limit: 'timeout' });
  if (options.cause === 'quota' && options.quota !== undefined) {
    return stoppedStepResult({ ...common, limit: 'workspace', message: quotaExceededMessage(options.quota.usedBytes, options.quota.quotaBytes) });
  }
  if (options.cause !== 'protocol' && options.limit !== undefined) return stoppedStepResult({ ...common, limit: options.limit });
  const error =
    options.cause === 'protocol'
      ? { name: 'ResultRefused', value: RESULT_TOO_LARGE_MESSAGE, traceback: '' }
      : {
          name: 'RunnerEnded',
          value: options.oneShot
            ? `The step's process ended before it could report (${options.endDescription}).`
            : `The sandbox session ended during this step (${options.endDescription}).`,
          traceback: '',
        };
  return {
    stepId: options.stepId,
    exitCode: options.exitCode,
    stdout: options.output.stdout,
    stderr: options.output.stderr,
    outputTruncated: options.output.truncated,
    error,
    durationMs: common.durationMs,
    figures: [],
    files: [],
    unsaved: [],
    notes: [options.note],
  };
}
