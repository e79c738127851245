import { z } from 'zod';
import { describeError } from '../errors.js';
import { truncateMiddle } from '../text.js';
import type { ResourceLimits, StepLimitKind, StepRequest, StepResult, TableDisplay } from './sandbox.js';

/**
 * The step protocol between the controller and sandbox-image/runner.py, the same for both backends
 * (docs/architecture.md, Step protocol; the wire format: docs/runner-protocol.md). The controller writes
 * `.oi/steps/<id>/request.json` (StepRequestFile) into the workspace, starts
 * `runner.py --workspace <dir> --step <id>`, and reads `.oi/steps/<id>/result.json` (RunnerResultFile).
 * runner.py exits 0 when the user's code raised (that is data), non-zero only when the runner itself failed.
 *
 * The workspace is writable by the user's code, so result.json is untrusted input: both backends check it
 * against the one schema below. The wording of a limit the controller had to enforce itself (the runner was
 * killed, or the execution timed out) is here too, so a limit reads the same on every backend.
 */

export const DEFAULT_LIMITS: ResourceLimits = { memoryMb: 2048, cpuSec: 600, maxProcesses: 256, maxFileMb: 1024 };

/** Bytes of stdout and of stderr a step keeps (head and tail), in both sandboxes. */
export const DEFAULT_MAX_OUTPUT_BYTES = 100_000;

/** The error name of a step stopped at STEP_TIMEOUT_SEC: what runner.py raises in the user's code, and what the controller reports when it had to stop the runner itself. */
export const STEP_TIMEOUT_ERROR = 'StepTimeout';
/** The error name of a step the controller found killed by another limit. */
const LIMIT_EXCEEDED_ERROR = 'LimitExceeded';

const stepRequestFileSchema = z.object({
  id: z.string().min(1),
  language: z.literal('python'),
  code: z.string(),
  timeoutSec: z.number().positive(),
  limits: z.object({
    memoryMb: z.number().int().positive(),
    cpuSec: z.number().int().positive(),
    maxProcesses: z.number().int().positive(),
    maxFileMb: z.number().int().positive(),
  }),
  /** Bytes of stdout and of stderr kept (head and tail). */
  maxOutputBytes: z.number().int().positive(),
  /** The controller shows tables from `displays` (issue 16): the runner then no longer prints their text to stdout. */
  displays: z.literal(true),
});

/** Contents of `.oi/steps/<id>/request.json`. */
export type StepRequestFile = z.infer<typeof stepRequestFileSchema>;

/**
 * The runner bounds a table (runner_bounds.py: 10 tables, 50 rows, 20 columns, 100 characters a cell, 4,000 of
 * text); the controller bounds it again (boundDisplays) rather than refusing a whole result for one long cell.
 */
const tableDisplaySchema = z.object({
  kind: z.literal('table'),
  columns: z.array(z.string()),
  indexColumns: z.number().int().nonnegative(),
  rows: z.array(z.array(z.string())),
  totalRows: z.number().int().nonnegative(),
  totalColumns: z.number().int().nonnegative(),
  text: z.string(),
  csv: z.string().optional(),
});

const DISPLAY_CAPS = { tables: 10, rows: 50, columns: 20, cellChars: 100, textChars: 4_000 };

const runnerResultSchema = z.object({
  id: z.string(),
  stdout: z.string(),
  stderr: z.string(),
  outputTruncated: z.boolean(),
  error: z.object({ name: z.string(), value: z.string(), traceback: z.string() }).nullable(),
  durationMs: z.number(),
  figures: z.array(z.string()),
  files: z.array(z.object({ path: z.string(), change: z.enum(['created', 'modified', 'deleted']), size: z.number() })),
  unsaved: z.array(z.string()),
  notes: z.array(z.string()),
  /** Set by the runner when the user's code was stopped by a limit (the error names it). */
  limit: z.enum(['timeout', 'memory', 'cpu', 'processes', 'file_size']).optional(),
  /** Tables the step showed (docs/runner-protocol.md, Displays). */
  displays: z.array(tableDisplaySchema).optional(),
});

/** Contents of `.oi/steps/<id>/result.json`, written by runner.py (it mirrors these names field for field). */
export type RunnerResultFile = z.infer<typeof runnerResultSchema>;

/** The request file of one step, as JSON; both backends write exactly this. */
export function stepRequestJson(id: string, request: StepRequest, limits: ResourceLimits, maxOutputBytes: number): string {
  const file: StepRequestFile = { id, language: request.language, code: request.code, timeoutSec: request.timeoutSec, limits, maxOutputBytes, displays: true };
  return JSON.stringify(stepRequestFileSchema.parse(file));
}

/** The runner's result file for step `stepId`, checked field by field; a problem when it is not one. */
export function parseRunnerResult(text: string, stepId: string): { result: StepResult } | { problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { problem: `result.json is not JSON (${describeError(error)})` };
  }
  const parsed = runnerResultSchema.safeParse(json);
  if (!parsed.success) return { problem: `result.json does not match the protocol: ${z.prettifyError(parsed.error).replaceAll('\n', ' ')}` };
  const { id, displays, ...fields } = parsed.data;
  if (id !== stepId) return { problem: `result.json belongs to step ${id}, not ${stepId}` };
  return { result: { ...fields, ...(displays === undefined ? {} : { displays: boundDisplays(displays) }), stepId, exitCode: 0 } };
}

/**
 * The tables of a session's result (issue 16). Checked one by one: a malformed table is dropped, not a reason to
 * refuse the step's whole result; the rest are bounded like a one-shot result's.
 */
export function sessionDisplays(displays: unknown[] | undefined): { displays?: TableDisplay[] } {
  if (displays === undefined) return {};
  const tables = displays.flatMap((display) => {
    const parsed = tableDisplaySchema.safeParse(display);
    return parsed.success ? [parsed.data] : [];
  });
  return { displays: boundDisplays(tables) };
}

/** The runner's caps applied again: whatever the step's code wrote, a table stays small enough to show and to send. */
function boundDisplays(displays: TableDisplay[]): TableDisplay[] {
  const cut = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);
  const cells = (row: string[]) => row.slice(0, DISPLAY_CAPS.columns).map((cell) => cut(cell, DISPLAY_CAPS.cellChars));
  return displays.slice(0, DISPLAY_CAPS.tables).map(({ csv, ...display }) => ({
    ...display,
    // Only the runner's own folder: the step's code could name any file of the workspace here.
    ...(csv !== undefined && /^\.oi\/displays\/[\w-]+\/\d+\.csv$/.test(csv) ? { csv } : {}),
    columns: cells(display.columns),
    indexColumns: Math.min(display.indexColumns, DISPLAY_CAPS.columns),
    rows: display.rows.slice(0, DISPLAY_CAPS.rows).map(cells),
    text: truncateMiddle(display.text, DISPLAY_CAPS.textChars),
  }));
}

/** The one sentence that names the limit a step hit, with its setting. */
function limitMessage(limit: StepLimitKind, limits: ResourceLimits, timeoutSec: number): string {
  switch (limit) {
    case 'timeout':
      return `The step was stopped after ${timeoutSec} s (STEP_TIMEOUT_SEC).`;
    case 'cpu':
      return `The step used its CPU time limit (SANDBOX_CPU_SEC=${limits.cpuSec} s) and was stopped.`;
    case 'memory':
      return `The step was killed, most likely out of memory: memory limit (SANDBOX_MEMORY_MB=${limits.memoryMb}).`;
    case 'processes':
      return `The step hit the process limit (SANDBOX_MAX_PROCESSES=${limits.maxProcesses}).`;
    case 'file_size':
      return `A file grew past the file size limit (SANDBOX_MAX_FILE_MB=${limits.maxFileMb}).`;
    case 'workspace':
      return "The step was stopped: the thread's workspace reached its size limit (SANDBOX_WORKSPACE_MAX_MB).";
  }
}

/** The result of a step whose runner the controller found stopped by a limit (it wrote no result file). */
export function stoppedStepResult(options: {
  stepId: string;
  limit: StepLimitKind;
  limits: ResourceLimits;
  timeoutSec: number;
  durationMs: number;
  exitCode: number;
  /** What the step had printed before it was stopped, when it could be read. */
  output?: { stdout: string; stderr: string; truncated: boolean };
  /** What was lost, for the model. */
  note: string;
  /** A sentence with more detail than the limit's own (the workspace's sizes). */
  message?: string;
}): StepResult {
  const { limit } = options;
  return {
    stepId: options.stepId,
    exitCode: options.exitCode,
    stdout: options.output?.stdout ?? '',
    stderr: options.output?.stderr ?? '',
    outputTruncated: options.output?.truncated ?? false,
    error: {
      name: limit === 'timeout' ? STEP_TIMEOUT_ERROR : LIMIT_EXCEEDED_ERROR,
      value: options.message ?? limitMessage(limit, options.limits, options.timeoutSec),
      traceback: '',
    },
    durationMs: options.durationMs,
    figures: [],
    files: [],
    unsaved: [],
    notes: [options.note],
    limit,
  };
}

/*
 * Session mode (docs/runner-protocol.md, "Session mode"): requests and replies as JSON lines on the runner's
 * stdin and stdout. Every reply comes from a process that runs the thread's code, so each is checked against
 * these schemas before anything of it is used, and a line is never longer than SESSION_LINE_MAX_BYTES.
 */

export const SESSION_LINE_MAX_BYTES = 1024 * 1024;

const readySchema = z.object({
  type: z.literal('ready'),
  restored: z.enum(['checkpoint', 'fresh']),
  notes: z.array(z.string()),
});

/** A session's result: the one-shot result's fields, where the variables came from, and tables (issue 16). */
const resultSchema = runnerResultSchema.extend({
  type: z.literal('result'),
  restored: z.enum(['memory', 'checkpoint', 'fresh']),
  displays: z.array(z.unknown()).optional(),
});

const errorSchema = z.object({ type: z.literal('error'), id: z.string().optional(), message: z.string() });

const replySchema = z.discriminatedUnion('type', [readySchema, resultSchema, errorSchema]);

export type SessionReply = z.infer<typeof replySchema>;
export type SessionResultReply = z.infer<typeof resultSchema>;

/** One reply line, checked; a problem (for the log, and to end the session) when it is not one. */
export function parseSessionReply(line: string): { reply: SessionReply } | { problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return { problem: 'a reply line is not JSON' };
  }
  const parsed = replySchema.safeParse(json);
  if (!parsed.success) return { problem: `a reply does not match the protocol: ${z.prettifyError(parsed.error).replaceAll('\n', ' ')}` };
  return { reply: parsed.data };
}

export function stepRequestLine(id: string, request: StepRequest, limits: ResourceLimits, maxOutputBytes: number): string {
  return JSON.stringify({ type: 'step', id, code: request.code, timeoutSec: request.timeoutSec, limits, maxOutputBytes }) + '\n';
}

export function stopRequestLine(id: string): string {
  return JSON.stringify({ type: 'stop', id }) + '\n';
}

export function exitRequestLine(): string {
  return JSON.stringify({ type: 'exit' }) + '\n';
}
