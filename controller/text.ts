/**
 * Wording helpers shared by every layer (Slack messages, tool output for the model, status lines): sizes,
 * durations, counts and middle truncation. Nothing here knows about Slack or the model.
 */

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024 * 1024) return `${(bytes / (1024 * 1024 * 1024)).toFixed(1)} GB`;
  if (bytes >= 1024 * 1024) return `${Math.round(bytes / (1024 * 1024))} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} bytes`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** `1 step`, `2 steps`: English plurals of the words used here (all take an `s`). */
export function countOf(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

/** Keeps the head and the tail of `text` within `maxChars`, with a note of how much was cut in the middle. */
export function truncateMiddle(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  let cut = text.length - maxChars;
  for (let attempt = 0; attempt < 3; attempt++) {
    const available = maxChars - cutNote(cut).length;
    if (available < 2) return text.slice(0, codePointBoundary(text, maxChars));
    cut = text.length - available;
  }
  const available = maxChars - cutNote(cut).length;
  const headEnd = codePointBoundary(text, Math.ceil(available / 2));
  const tailStart = codePointBoundary(text, text.length - (available - headEnd));
  return text.slice(0, headEnd) + cutNote(tailStart - headEnd) + text.slice(tailStart);
}

function cutNote(cut: number): string {
  return `\n… [${cut} characters cut] …\n`;
}

/** Moves an index off the second half of a surrogate pair, so a cut never splits a character. */
export function codePointBoundary(text: string, index: number): number {
  const code = text.charCodeAt(index - 1);
  return index > 0 && index < text.length && code >= 0xd800 && code <= 0xdbff ? index - 1 : index;
}
