import type { StepResult } from './sandbox.js';

/**
 * Bounds a step result again on the controller's side (issue 14, finding 1 and 2): the runner caps
 * every field itself, but the user's code runs in the runner's own process and can write anything.
 * Every string is cut (head and tail kept where both matter) and every list shortened, so no thread
 * can grow the controller's memory or a history entry without bound. The result as a whole was
 * already refused above RESULT_MAX_BYTES before it was parsed; durations are the controller's own.
 */

/** A runner's result (a reply line, or result.json) larger than this is refused, not parsed. */
export const RESULT_MAX_BYTES = 1024 * 1024;

export const RESULT_CAPS = {
  errorName: 200,
  errorValue: 8_000,
  traceback: 16_000,
  notes: 20,
  noteLength: 1_000,
  files: 500,
  pathLength: 1_024,
  figures: 50,
  unsaved: 100,
  unsavedLength: 200,
};

export const RESULT_TOO_LARGE_MESSAGE =
  `The step's result was larger than ${RESULT_MAX_BYTES / (1024 * 1024)} MB and was refused: print less ` +
  '(write large outputs to files instead).';

/** Keeps the head and the tail of text, at most max characters in all, with a marker in between. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = `\n[... ${text.length - max} characters cut ...]\n`;
  const keep = Math.max(0, max - marker.length);
  const head = Math.ceil(keep / 2);
  return text.slice(0, head) + marker + text.slice(text.length - (keep - head));
}

function clipList(items: string[], count: number, length: number): string[] {
  return items.slice(0, count).map((item) => clip(item, length));
}

/** The result with every field within its cap and the controller's own duration. */
export function boundStepResult(result: StepResult, options: { maxOutputBytes: number; durationMs: number }): StepResult {
  const notes = clipList(result.notes, RESULT_CAPS.notes, RESULT_CAPS.noteLength);
  const filesCut = result.files.length - RESULT_CAPS.files;
  if (filesCut > 0) notes.push(`${filesCut} more changed files are not listed.`);
  const stdout = clip(result.stdout, options.maxOutputBytes);
  const stderr = clip(result.stderr, options.maxOutputBytes);
  return {
    ...result,
    stdout,
    stderr,
    outputTruncated: result.outputTruncated || stdout !== result.stdout || stderr !== result.stderr,
    error:
      result.error === null
        ? null
        : {
            name: clip(result.error.name, RESULT_CAPS.errorName),
            value: clip(result.error.value, RESULT_CAPS.errorValue),
            traceback: clip(result.error.traceback, RESULT_CAPS.traceback),
          },
    durationMs: Math.max(0, Math.round(options.durationMs)),
    figures: clipList(result.figures, RESULT_CAPS.figures, RESULT_CAPS.pathLength),
    files: result.files.slice(0, RESULT_CAPS.files).map((file) => ({
      path: clip(file.path, RESULT_CAPS.pathLength),
      change: file.change,
      size: Number.isFinite(file.size) && file.size >= 0 ? file.size : 0,
    })),
    unsaved: clipList(result.unsaved, RESULT_CAPS.unsaved, RESULT_CAPS.unsavedLength),
    notes,
  };
}
