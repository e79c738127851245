import { AppError } from '../errors.js';
import type { Workspace } from '../workspace/workspace.js';

/**
 * The Sandbox seam (DESIGN.md): run one step of code for one thread, with the thread's workspace as
 * the working directory, and return what happened. LocalSandbox (runner.py in a local process,
 * bubblewrap when available) and CloudRunSandbox (a Cloud Run Job execution) differ only in how they
 * start sandbox-image/runner.py; the request/result files are the same.
 *
 * Protocol: the controller writes `.oi/steps/<id>/request.json` (StepRequestFile) into the workspace,
 * starts `runner.py --workspace <dir> --step <id>`, and reads `.oi/steps/<id>/result.json`
 * (RunnerResultFile). runner.py exits 0 when the user's code raised (that is data), non-zero only
 * when the runner itself failed.
 */

export interface ResourceLimits {
  memoryMb: number;
  cpuSec: number;
  maxProcesses: number;
  maxFileMb: number;
}

export interface StepRequest {
  language: 'python';
  code: string;
  timeoutSec: number;
}

/** Contents of `.oi/steps/<id>/request.json`. */
export interface StepRequestFile extends StepRequest {
  id: string;
  limits: ResourceLimits;
  /** Bytes of stdout and of stderr kept (head and tail). */
  maxOutputBytes: number;
}

export interface StepError {
  name: string;
  value: string;
  traceback: string;
}

export interface ChangedFile {
  path: string;
  change: 'created' | 'modified' | 'deleted';
  size: number;
}

/** Contents of `.oi/steps/<id>/result.json`, written by runner.py (snake_case is not used: mirror these names). */
export interface RunnerResultFile {
  id: string;
  stdout: string;
  stderr: string;
  /** True when stdout/stderr were cut to maxOutputBytes (head and tail kept). */
  outputTruncated: boolean;
  error: StepError | null;
  durationMs: number;
  /** PNGs saved by plt.show() (relative paths, also listed in files). */
  figures: string[];
  files: ChangedFile[];
  /** Global names whose values could not be saved for the next step (open files, sockets, ...). */
  unsaved: string[];
  /** Short notes for the model, e.g. "saved state could not be loaded and was dropped". */
  notes: string[];
  /** Set by the runner when the user's code was stopped by a limit (the error names it). */
  limit?: StepLimitKind;
}

export type StepLimitKind = 'timeout' | 'memory' | 'cpu' | 'processes' | 'file_size';

export interface StepResult extends Omit<RunnerResultFile, 'id'> {
  stepId: string;
  exitCode: number;
  /** Set when the step was ended by a limit; `error` then explains it in one sentence naming the limit. */
  limit?: StepLimitKind;
}

export interface RunOptions {
  /** Aborting cancels the step (local process tree killed, Cloud Run execution cancelled). */
  signal?: AbortSignal;
}

export interface Sandbox {
  /**
   * Runs one step. A failure of the user's code, a timeout or a resource limit comes back as a
   * StepResult with `error` set. Infrastructure failures (the runner could not start, crashed, or the
   * execution failed) and cancellation throw SandboxError.
   */
  run(workspace: Workspace, request: StepRequest, options?: RunOptions): Promise<StepResult>;
  /** Releases resources (background processes, clients). */
  close?(): Promise<void>;
}

export type SandboxErrorCode = 'cancelled' | 'start_failed' | 'runner_failed' | 'unsupported_workspace';

export class SandboxError extends AppError {
  readonly code: SandboxErrorCode;
  constructor(code: SandboxErrorCode, message: string, options?: { cause?: unknown; userMessage?: string }) {
    super(message, options);
    this.code = code;
  }
}

export const DEFAULT_LIMITS: ResourceLimits = { memoryMb: 2048, cpuSec: 600, maxProcesses: 256, maxFileMb: 1024 };

/** Bytes of stdout and of stderr a step keeps (head and tail), in both sandboxes. */
export const DEFAULT_MAX_OUTPUT_BYTES = 100_000;
