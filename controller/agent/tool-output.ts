import type { StepResult } from '../sandbox/sandbox.js';
import { formatBytes, truncateMiddle } from '../text.js';

/** What the model reads back from one step: output first, then errors, files and notes. */
export function formatStepForModel(result: StepResult, maxChars: number): string {
  const parts: string[] = [];
  if (result.stdout !== '') parts.push(result.stdout.trimEnd());
  if (result.stderr !== '') parts.push(`[stderr]\n${result.stderr.trimEnd()}`);
  if (result.error !== null) {
    const traceback = result.error.traceback.trim();
    parts.push(`[error] ${result.error.name}: ${result.error.value}${traceback === '' ? '' : `\n${traceback}`}`);
  }
  const changed = result.files.filter((file) => file.change !== 'deleted');
  if (changed.length > 0) {
    parts.push(`[files] ${changed.map((file) => `${file.path} (${file.change}, ${formatBytes(file.size)})`).join(', ')}`);
  }
  if (result.figures.length > 0) parts.push(`[figures shown to the user] ${result.figures.join(', ')}`);
  // Tables are shown to the user as native tables; the model reads their compact text (issue 16).
  for (const [index, display] of (result.displays ?? []).entries()) {
    parts.push(`[table ${index + 1} shown to the user: ${display.totalRows} rows × ${display.totalColumns} columns]\n${display.text}`);
  }
  if (result.unsaved.length > 0) {
    parts.push(`[not kept for the next step, re-create if needed] ${result.unsaved.join(', ')}`);
  }
  for (const note of result.notes) parts.push(`[note] ${note}`);
  const text = parts.length === 0 ? '(the step ran and printed nothing)' : parts.join('\n');
  return truncateMiddle(text, maxChars);
}
