/**
 * Slack text formatting: Markdown from the model to Slack mrkdwn, and long texts split into postable parts.
 */
import { slackifyMarkdown } from 'slackify-markdown';
import { codePointBoundary } from '../text.js';

const FENCE = '```';

/**
 * Converts the model's Markdown to Slack mrkdwn (bold, italics, `<url|text>` links, code blocks without a language
 * tag, lists, headings as bold). On top of slackify-markdown: tables become aligned code blocks (Slack has no
 * tables), `&`, `<`, `>` are escaped everywhere including code, and only user/channel mentions and links survive as
 * Slack control sequences (so model output can never `<!channel>` a whole channel).
 */
export function toSlackMrkdwn(markdown: string): string {
  const converted = slackifyMarkdown(tablesToCodeBlocks(markdown));
  return escapeControlSequences(converted).replace(/\n+$/, '');
}

/** Splits text into parts of at most `maxChars`: at blank lines, then lines, then hard; code blocks are closed and reopened. */
export function splitForSlack(text: string, maxChars = 3500): string[] {
  if (maxChars < 1) throw new RangeError('maxChars must be positive');
  const parts: string[] = [];
  let current = '';
  for (const unit of parseUnits(text.replace(/\s+$/, ''))) {
    const candidate = current ? current + unit.separator + unit.text : unit.text;
    if (candidate.length <= maxChars) {
      current = candidate;
      continue;
    }
    if (current) parts.push(current);
    current = '';
    if (unit.text.length <= maxChars) {
      current = unit.text;
      continue;
    }
    const pieces = unit.code ? splitCode(unit.code, maxChars) : splitLines(unit.text.split('\n'), maxChars, false);
    parts.push(...pieces.slice(0, -1));
    current = pieces.at(-1) ?? '';
  }
  if (current) parts.push(current);
  return parts.filter((part) => part.trim() !== '');
}

interface CodeBlock {
  open: string;
  body: string[];
  /** Undefined when the block was never closed. */
  close: string | undefined;
  indent: string;
}

interface Unit {
  text: string;
  /** What joined this unit to the previous one in the original text (a newline plus any blank lines). */
  separator: string;
  code?: CodeBlock;
}

function fenceCount(line: string): number {
  return line.split(FENCE).length - 1;
}

/** Paragraphs (separated by blank lines) and whole code blocks, in order. */
function parseUnits(text: string): Unit[] {
  const lines = text.split('\n');
  const units: Unit[] = [];
  let paragraph: string[] = [];
  let separator = '';
  const flush = () => {
    if (paragraph.length === 0) return;
    units.push({ text: paragraph.join('\n'), separator });
    paragraph = [];
    separator = '\n';
  };
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    if (line.trimStart().startsWith(FENCE) && fenceCount(line) % 2 === 1) {
      flush();
      const body: string[] = [];
      let close: string | undefined;
      while (++index < lines.length) {
        const next = lines[index]!;
        if (fenceCount(next) % 2 === 1) {
          close = next;
          break;
        }
        body.push(next);
      }
      const indent = /^\s*/.exec(line)?.[0] ?? '';
      const code: CodeBlock = { open: line, body, close, indent };
      units.push({ text: [line, ...body, ...(close === undefined ? [] : [close])].join('\n'), separator, code });
      separator = '\n';
    } else if (line.trim() === '') {
      flush();
      if (units.length > 0) separator += '\n';
    } else {
      paragraph.push(line);
    }
  }
  flush();
  return units;
}

/** Packs lines into parts of at most maxChars; a line longer than that is cut. */
function splitLines(lines: string[], maxChars: number, keepWhitespace: boolean): string[] {
  const parts: string[] = [];
  let current: string | undefined;
  for (const line of lines) {
    const candidate = current === undefined ? line : `${current}\n${line}`;
    if (candidate.length <= maxChars) {
      current = candidate;
      continue;
    }
    if (current !== undefined) parts.push(current);
    current = undefined;
    if (line.length <= maxChars) {
      current = line;
      continue;
    }
    const pieces = hardSplit(line, maxChars, keepWhitespace);
    parts.push(...pieces.slice(0, -1));
    current = pieces.at(-1);
  }
  if (current !== undefined) parts.push(current);
  return parts;
}

/** Splits a code block into parts that each open and close their own fence. */
function splitCode(code: CodeBlock, maxChars: number): string[] {
  const reopen = `${code.indent}${FENCE}`;
  const closer = `${code.indent}${FENCE}`;
  const overhead = Math.max(code.open.length, reopen.length) + Math.max(closer.length, code.close?.length ?? 0) + 2;
  const budget = maxChars - overhead;
  if (budget < 1) return hardSplit([code.open, ...code.body, code.close ?? ''].join('\n'), maxChars, true);
  const chunks = splitLines(code.body, budget, true);
  if (chunks.length === 0) chunks.push('');
  return chunks.map((chunk, index) => {
    const open = index === 0 ? code.open : reopen;
    const last = index === chunks.length - 1;
    const close = last ? code.close : closer;
    return close === undefined ? `${open}\n${chunk}` : `${open}\n${chunk}\n${close}`;
  });
}

/** Cuts a single long line, preferring whitespace, never inside `<...>`, an `&entity;` or a surrogate pair. */
function hardSplit(line: string, maxChars: number, keepWhitespace: boolean): string[] {
  const pieces: string[] = [];
  let rest = line;
  while (rest.length > maxChars) {
    let cut = maxChars;
    if (!keepWhitespace) {
      const space = rest.lastIndexOf(' ', maxChars);
      if (space >= maxChars * 0.6) cut = space;
    }
    const open = rest.lastIndexOf('<', cut - 1);
    if (open > 0 && open > cut - 300 && rest.indexOf('>', open) >= cut) cut = open;
    const ampersand = rest.lastIndexOf('&', cut - 1);
    if (ampersand > 0 && ampersand > cut - 8 && !rest.slice(ampersand, cut).includes(';')) cut = ampersand;
    cut = Math.max(1, codePointBoundary(rest, cut));
    pieces.push(rest.slice(0, cut));
    rest = keepWhitespace ? rest.slice(cut) : rest.slice(cut).replace(/^ /, '');
  }
  pieces.push(rest);
  return pieces;
}

/**
 * Escapes `&`, `<`, `>` in code (slackify-markdown leaves code raw) and any `<...>` in text that is not a link or a
 * user/channel mention (raw HTML passes through slackify-markdown unescaped).
 */
function escapeControlSequences(mrkdwn: string): string {
  const allowed = /^<(?:@[UW][A-Z0-9]+|#C[A-Z0-9]+)(?:\|[^<>]*)?>|^<(?:https?:\/\/|mailto:)[^\s<>|]*(?:\|[^<>]*)?>/;
  const escapeAll = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const escapeText = (text: string) =>
    text
      .replace(/&(?!(?:amp|lt|gt);)/g, '&amp;')
      .replace(/(?:&lt;|<)(@[UW][A-Z0-9]+|#C[A-Z0-9]+)(\|[^&<>|]*)?&gt;/g, '<$1$2>') // slackify-markdown escapes labelled mentions
      .split(/(?=<)/)
      .map((piece) => (piece.startsWith('<') && !allowed.test(piece) ? `&lt;${piece.slice(1)}` : piece))
      .join('')
      .replace(/^\*\*\*$/gm, '──────────'); // a thematic break: Slack would show the asterisks
  // Code blocks (```...```) and inline code (`...`) are escaped fully; everything else keeps links and mentions.
  return mrkdwn
    .split(/(```[^]*?```|`[^`\n]+`)/)
    .map((segment, index) => (index % 2 === 1 ? escapeAll(segment) : escapeText(segment)))
    .join('');
}

/** GitHub-style tables become code blocks with aligned columns: Slack renders no tables. */
function tablesToCodeBlocks(markdown: string): string {
  const lines = markdown.split('\n');
  const output: string[] = [];
  const separator = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
  let inFence = false;
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    if (line.trimStart().startsWith(FENCE)) inFence = !inFence;
    const next = lines[index + 1];
    if (inFence || !line.includes('|') || next === undefined || !separator.test(next) || !next.includes('-')) {
      output.push(line);
      continue;
    }
    const rows = [cells(line)];
    index += 1;
    while (index + 1 < lines.length && lines[index + 1]!.includes('|') && lines[index + 1]!.trim() !== '') {
      rows.push(cells(lines[++index]!));
    }
    const columns = Math.max(...rows.map((row) => row.length));
    const widths = Array.from({ length: columns }, (_, column) => Math.max(...rows.map((row) => displayWidth(row[column] ?? ''))));
    const format = (row: string[]) =>
      widths.map((width, column) => pad(row[column] ?? '', width)).join('  ').replace(/\s+$/, '');
    const rule = widths.map((width) => '-'.repeat(width)).join('  ');
    output.push(FENCE, format(rows[0]!), rule, ...rows.slice(1).map(format), FENCE);
  }
  return output.join('\n');
}

function cells(line: string): string[] {
  const trimmed = line.trim().replace(/^\|/, '').replace(/(?<!\\)\|$/, '');
  return trimmed.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, '|').replace(/\*\*|__|`/g, ''));
}

/** Monospace width: East Asian wide characters take two columns. */
function displayWidth(text: string): number {
  let width = 0;
  for (const character of text) {
    width += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]|[\u{20000}-\u{3fffd}]|\p{Extended_Pictographic}/u.test(character) ? 2 : 1;
  }
  return width;
}

function pad(text: string, width: number): string {
  return text + ' '.repeat(Math.max(0, width - displayWidth(text)));
}
