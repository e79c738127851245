import { AppError } from '../errors.js';
import type { Workspace } from '../workspace/workspace.js';

/**
 * The Sandbox seam (docs/architecture.md, Seams): a session per thread that runs steps of code with the
 * thread's workspace as the working directory and returns what happened. LocalSandbox (runner.py in a local
 * process, bubblewrap when available) and CloudRunSandbox (a Cloud Run Job execution) differ only in how
 * they start sandbox-image/runner.py; the request and result they exchange with it are one protocol
 * (runner-protocol.ts).
 *
 * Today every step of a session starts a fresh runner (PerStepSession), which restores the thread's
 * variables from its checkpoint; a warm session keeps one runner alive instead, behind the same interface.
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

/** `workspace`: the thread's workspace reached SANDBOX_WORKSPACE_MAX_MB (the controller stops the step). */
export type StepLimitKind = 'timeout' | 'memory' | 'cpu' | 'processes' | 'file_size' | 'workspace';

/**
 * A pandas DataFrame or Series the step showed (its last expression or `display()`), as runner.py describes it
 * (docs/runner-protocol.md, Displays): the first rows as formatted text, the whole frame's size, a compact
 * rendering for the model, and the whole frame as CSV in the workspace when `rows` do not carry all of it.
 */
export interface TableDisplay {
  kind: 'table';
  /** Index level names first (`indexColumns` of them), then the first data columns. */
  columns: string[];
  indexColumns: number;
  rows: string[][];
  /** Rows and data columns of the whole frame. */
  totalRows: number;
  totalColumns: number;
  /** The compact rendering the model reads instead of a huge repr. */
  text: string;
  /** Workspace-relative path of the whole frame as CSV (`.oi/displays/<step>/<n>.csv`), valid until the next step starts. */
  csv?: string;
}

/** What one step did. A failure of the user's code is data: `error` is set and nothing is thrown. */
export interface StepResult {
  stepId: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  /** True when stdout/stderr were cut to the output limit (head and tail kept). */
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
  /** Set when the step was ended by a limit; `error` then explains it in one sentence naming the limit. */
  limit?: StepLimitKind;
  /** Tables the step showed (issue 16); absent when it showed none. */
  displays?: TableDisplay[];
}

export interface RunOptions {
  /** Aborting cancels the step (local process tree killed, Cloud Run execution cancelled). */
  signal?: AbortSignal;
}

/** One thread's use of the sandbox, for one turn. */
export interface SandboxSession {
  /**
   * Runs one step. A failure of the user's code, a timeout or a resource limit comes back as a
   * StepResult with `error` set. Infrastructure failures (the runner could not start, crashed, or the
   * execution failed) and cancellation throw SandboxError.
   */
  run(request: StepRequest, options?: RunOptions): Promise<StepResult>;
  /** The turn is done with the session (a warm session may stay alive for the thread's next turn). */
  release(): Promise<void>;
}

export interface Sandbox {
  /** A session for one thread's workspace. Returns at once; a backend may start warming up here. */
  session(workspace: Workspace): SandboxSession;
  /** Releases resources (running processes, clients). */
  close(): Promise<void>;
}

export type SandboxErrorCode = 'cancelled' | 'start_failed' | 'runner_failed' | 'unsupported_workspace';

export class SandboxError extends AppError {
  readonly code: SandboxErrorCode;
  constructor(code: SandboxErrorCode, message: string, options?: { cause?: unknown; userMessage?: string }) {
    super(message, options);
    this.code = code;
  }
}
