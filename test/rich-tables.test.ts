/**
 * Rich tables (issue 16): a step's table display as a message with Slack's table block, within its limits, and
 * the whole frame attached as CSV when the block shows only part of it. RecordingSlackThread refuses a table
 * block over Slack's limits (test/fakes/fake-slack-blocks.ts), so every message here is one Slack would take.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../controller/logger.js';
import type { TableDisplay } from '../controller/sandbox/sandbox.js';
import { csvOfRows, tableMessage } from '../controller/slack/table-message.js';
import { postStepTables } from '../controller/turn/step-tables.js';
import { LocalWorkspaceStore, type LocalWorkspace } from '../controller/workspace/local-workspace.js';
import { tableProblem } from './fakes/fake-slack-blocks.js';
import { RecordingSlackThread } from './helpers/recording-slack-thread.js';

function display(rows: number, columns: number, cell: (row: number, column: number) => string, extra: Partial<TableDisplay> = {}): TableDisplay {
  return {
    kind: 'table',
    columns: Array.from({ length: columns }, (_, column) => `c${column}`),
    indexColumns: 0,
    rows: Array.from({ length: rows }, (_, row) => Array.from({ length: columns }, (_, column) => cell(row, column))),
    totalRows: rows,
    totalColumns: columns,
    text: 'compact',
    ...extra,
  };
}

type TableRows = Array<Array<{ text: string }>>;
const tableRows = (blocks: unknown[] | undefined): TableRows => ((blocks ?? []).find((block) => (block as { type: string }).type === 'table') as { rows: TableRows }).rows;

describe('table messages', () => {
  test('a small frame is shown whole: header row, every row, the size; empty cells shown as a dash', () => {
    const { message, partial } = tableMessage(display(2, 2, (row, column) => (row === 1 && column === 1 ? '' : `${row}-${column}`)), 'Step 1 · table');
    expect(partial).toBe(false);
    expect(message.text).toBe('Step 1 · table: 2 rows × 2 columns');
    expect(tableRows(message.blocks).map((row) => row.map((cell) => cell.text))).toStrictEqual([['c0', 'c1'], ['0-0', '0-1'], ['1-0', '—']]);
    expect(tableProblem(message.blocks ?? [])).toBeUndefined();
  });

  test('long cells: rows are dropped from the end until the cells hold at most 10,000 characters', () => {
    const wide = display(50, 20, () => 'x'.repeat(100), { totalRows: 5000, totalColumns: 20 });
    const { message, partial } = tableMessage(wide, 'Step 2 · table');
    const rows = tableRows(message.blocks);
    expect(partial).toBe(true);
    expect(rows.flat().reduce((sum, cell) => sum + cell.text.length, 0)).toBeLessThanOrEqual(10_000);
    expect(rows.length).toBe(5); // the header (50 characters) and 4 rows of 2,000
    expect(message.text).toBe('Step 2 · table: 5,000 rows × 20 columns, showing the first 4 rows');
    expect(tableProblem(message.blocks ?? [])).toBeUndefined();
  });

  test('more columns than Slack shows: the first 20 (index columns first), and a note of the total', () => {
    const frame = display(3, 20, (row, column) => `${row}${column}`, { indexColumns: 1, totalColumns: 45 });
    const { message, partial } = tableMessage(frame, 'Step 3 · table');
    expect(partial).toBe(true);
    expect(message.text).toMatch(/3 rows × 45 columns, showing the first 3 rows and 19 of 45 columns$/);
    expect(tableRows(message.blocks)[0]).toHaveLength(20);
  });

  test('CSV of the rows quotes what needs quoting', () => {
    expect(csvOfRows(display(1, 2, (_, column) => (column === 0 ? 'a,"b"' : 'line\nbreak')))).toBe('c0,c1\r\n"a,""b""","line\nbreak"\r\n');
  });
});

describe('a step’s tables in the thread', () => {
  let dataDir: string;
  let workspace: LocalWorkspace;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'oi-tables-'));
    workspace = new LocalWorkspaceStore(dataDir).open({ team: 'T1', channel: 'C1', threadTs: '1700000000.000100' }) as LocalWorkspace;
  });
  afterAll(() => rm(dataDir, { recursive: true, force: true }));

  test('a partial table is followed by the runner’s CSV of the whole frame; a whole one by nothing', async () => {
    const thread = new RecordingSlackThread();
    await workspace.write('.oi/displays/s1/1.csv', 'c0\n1\n2\n3\n');
    const big = display(2, 1, (row) => String(row + 1), { totalRows: 3, csv: '.oi/displays/s1/1.csv' });
    const small = display(1, 1, () => 'only');
    await postStepTables({ thread, workspace, result: { ...stepResult(), displays: [big, small] }, step: 4, logger: silentLogger });
    expect(thread.texts).toStrictEqual(['Step 4 · table 1: 3 rows × 1 column, showing the first 2 rows', 'Step 4 · table 2: 1 row × 1 column']);
    expect(thread.uploads.map((upload) => [upload.filename, upload.content.toString(), upload.initialComment])).toStrictEqual([
      ['table-4-1.csv', 'c0\n1\n2\n3\n', 'The whole table (3 rows) as CSV:'],
    ]);
  });

  test('without the runner’s CSV: made from the rows when they are the whole frame, else said', async () => {
    const thread = new RecordingSlackThread();
    const longCells = display(2, 1, () => 'y'.repeat(6_000));
    const cut = display(2, 1, () => 'z', { totalRows: 500 });
    await postStepTables({ thread, workspace, result: { ...stepResult(), displays: [longCells, cut] }, step: 1, logger: silentLogger });
    expect(thread.uploads.map((upload) => upload.filename)).toStrictEqual(['table-1-1.csv']);
    expect(thread.uploads[0]?.content.toString()).toBe(csvOfRows(longCells));
    expect(thread.texts.at(-1)).toMatch(/could not be saved as a file/);
  });
});

function stepResult() {
  return { stepId: 's1', exitCode: 0, stdout: '', stderr: '', outputTruncated: false, error: null, durationMs: 1, figures: [], files: [], unsaved: [], notes: [] };
}
