/**
 * Names for uploaded files: whatever Slack says a file is called, the workspace gets a single safe
 * file name at its root (never a path, never hidden, never `.oi`), and never overwrites another file.
 */

/** Bytes, not characters: file systems limit a name to 255 bytes and Japanese letters take 3 each. */
const MAX_NAME_BYTES = 180;
const MAX_EXTENSION_BYTES = 24;
const COMPRESSION_EXTENSIONS = new Set(['gz', 'bz2', 'xz', 'zst', 'zip']);

/**
 * A single safe file name for `name`: the last path segment only, no control or bidi-override
 * characters, no leading dots (so never hidden and never `..` or `.oi`), at most MAX_NAME_BYTES
 * bytes with the extension kept; `file` when nothing is left. Unicode letters stay as they are.
 */
export function sanitizeFileName(name: string): string {
  const lastSegment = name.normalize('NFC').replace(/\\/g, '/').split('/').pop() ?? '';
  const cleaned = lastSegment
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is removed here
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, '')
    .replace(/[\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '') // direction overrides can disguise an extension
    .replace(/^[\s.]+/, '')
    .replace(/[\s.]+$/, '');
  if (cleaned === '') return 'file';
  return limitBytes(cleaned, MAX_NAME_BYTES);
}

/** `sales.csv` -> [`sales`, `.csv`]; `data.csv.gz` -> [`data`, `.csv.gz`]; `README` -> [`README`, ``]. */
function splitExtension(name: string): [stem: string, extension: string] {
  const last = /\.[A-Za-z0-9]{1,10}$/.exec(name);
  if (!last || last.index === 0) return [name, ''];
  let start = last.index;
  const inner = /\.[A-Za-z0-9]{1,10}$/.exec(name.slice(0, start));
  if (inner && inner.index > 0 && COMPRESSION_EXTENSIONS.has(last[0].slice(1).toLowerCase())) start = inner.index;
  return [name.slice(0, start), name.slice(start)];
}

/** `sales.csv`, then `sales (1).csv`, `sales (2).csv`, ...: the n-th candidate name for `name`. */
export function candidateName(name: string, attempt: number): string {
  if (attempt === 0) return name;
  const [stem, extension] = splitExtension(name);
  return `${stem} (${attempt})${extension}`;
}

function limitBytes(name: string, maxBytes: number): string {
  if (Buffer.byteLength(name) <= maxBytes) return name;
  let [stem, extension] = splitExtension(name);
  if (Buffer.byteLength(extension) > MAX_EXTENSION_BYTES) {
    stem = name;
    extension = '';
  }
  const budget = maxBytes - Buffer.byteLength(extension);
  let kept = '';
  for (const character of stem) {
    // for...of walks code points, so a surrogate pair is never cut in half
    if (Buffer.byteLength(kept + character) > budget) break;
    kept += character;
  }
  return `${kept.replace(/[\s.]+$/, '') || 'file'}${extension}`;
}

/** Longest path shown as a file's title or in a message. */
const MAX_PRINTABLE_CHARS = 250;

/**
 * A workspace file's name as sent to Slack (files.getUploadURLExternal `filename`): the base name of `path`
 * with control characters (Python can write `report\n.csv`) and direction overrides shown as `_`, at most
 * MAX_NAME_BYTES with the extension kept, `file` when nothing is left. A hidden file keeps its leading dot: it is
 * sent, under its own name. Slack documents no rule for file names, so the bot sends only names a person can read.
 */
export function sendableFileName(path: string): string {
  const base = printable(path.split('/').pop() ?? '').trim();
  return base.replace(/^\.+$/, '') === '' ? 'file' : limitBytes(base, MAX_NAME_BYTES);
}

/** A workspace path as a title or in a sentence: control characters shown as `_`, at most MAX_PRINTABLE_CHARS (middle cut). */
export function printablePath(path: string): string {
  const text = printable(path);
  if (text.length <= MAX_PRINTABLE_CHARS) return text;
  const half = Math.floor((MAX_PRINTABLE_CHARS - 1) / 2);
  return `${text.slice(0, half)}…${text.slice(text.length - half)}`;
}

function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is replaced here
  return text.normalize('NFC').replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '_');
}
