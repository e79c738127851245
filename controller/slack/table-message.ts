import type { KnownBlock, TableBlock } from '@slack/types';
import type { TableDisplay } from '../sandbox/sandbox.js';
import type { ThreadMessage } from './slack-thread.js';

/**
 * A table a step showed (a pandas DataFrame or Series, runner.py's `displays`) as a message with Slack's `table`
 * block (https://docs.slack.dev/reference/block-kit/blocks/table-block): the first row is the header, then the
 * first data rows, within the block's limits: 100 rows of at most 20 cells, at most 10,000 characters across the
 * cells of the message, no empty `raw_text` cell. One table per message (older documentation and reports say
 * Slack refuses a second one). `table` rather than the newer `data_table`, whose limits are not fully documented.
 */

const MAX_ROWS = 100;
const MAX_CELLS = 20;
const MAX_CHARACTERS = 10_000;
/** What an empty cell shows: Slack refuses a `raw_text` cell without text. */
const EMPTY_CELL = '—';

export interface TableMessage {
  message: ThreadMessage;
  /** The message shows only part of the frame: the whole of it should be attached (CSV). */
  partial: boolean;
}

export function tableMessage(display: TableDisplay, caption: string): TableMessage {
  const header = display.columns.slice(0, MAX_CELLS);
  const width = header.length;
  const rows = display.rows.slice(0, MAX_ROWS - 1).map((row) => padded(row, width));
  let characters = count(header) + rows.reduce((sum, row) => sum + count(row), 0);
  while (rows.length > 1 && characters > MAX_CHARACTERS) characters -= count(rows.pop()!);
  const dataColumns = Math.max(0, width - display.indexColumns);
  const partial = rows.length < display.totalRows || dataColumns < display.totalColumns || characters > MAX_CHARACTERS;
  const note = describe(display, rows.length, dataColumns, partial);
  const table: TableBlock = {
    type: 'table',
    rows: [header, ...rows].map((row) => row.map((cell) => ({ type: 'raw_text' as const, text: cell === '' ? EMPTY_CELL : cell }))),
  };
  const blocks: KnownBlock[] = [{ type: 'section', text: { type: 'mrkdwn', text: `*${escape(caption)}* · ${note}` } }];
  // A table that still does not fit (a single row of very long cells) is described, not sent.
  if (width > 0 && characters <= MAX_CHARACTERS) blocks.push(table);
  return { message: { text: `${caption}: ${note}`, blocks }, partial };
}

/** The cells of `rows` (the header first) as CSV (RFC 4180 quoting), when the controller has the whole frame. */
export function csvOfRows(display: TableDisplay): string {
  const quote = (cell: string) => (/[",\r\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell);
  return [display.columns, ...display.rows].map((row) => row.map(quote).join(',')).join('\r\n') + '\r\n';
}

function describe(display: TableDisplay, shownRows: number, shownColumns: number, partial: boolean): string {
  const size = `${plural(display.totalRows, 'row')} × ${plural(display.totalColumns, 'column')}`;
  if (!partial) return size;
  const parts = [`first ${shownRows.toLocaleString('en-US')} rows`];
  if (shownColumns < display.totalColumns) parts.push(`${shownColumns} of ${display.totalColumns} columns`);
  return `${size}, showing the ${parts.join(' and ')}`;
}

function padded(row: string[], width: number): string[] {
  return Array.from({ length: width }, (_, index) => row[index] ?? '');
}

function count(row: string[]): number {
  return row.reduce((sum, cell) => sum + (cell === '' ? EMPTY_CELL.length : cell.length), 0);
}

function plural(count: number, word: string): string {
  return `${count.toLocaleString('en-US')} ${word}${count === 1 ? '' : 's'}`;
}

function escape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}
