/**
 * The table block's rules (https://docs.slack.dev/reference/block-kit/blocks/table-block), enforced by FakeSlack and
 * RecordingSlackThread on chat.postMessage / chat.update: at most 100 rows of at most 20 cells; `raw_text` cells
 * with text of at least one character (Slack refuses an empty cell), `rich_text` or `raw_number`; at most 10,000
 * characters across the cells of a table and of the whole message; one table per message (what Slack's older
 * documentation and several reports state; more than one gave `invalid_blocks`).
 */

const MAX_ROWS = 100;
const MAX_CELLS = 20;
const MAX_TABLE_CHARS = 10_000;

type Cell = { type?: unknown; text?: unknown; value?: unknown; elements?: unknown };

/** `invalid_blocks` when a table in `blocks` breaks a rule, else undefined. */
export function tableProblem(blocks: readonly unknown[]): string | undefined {
  const tables = blocks.filter((block) => (block as { type?: unknown } | null)?.type === 'table') as Array<{ rows?: unknown; column_settings?: unknown }>;
  if (tables.length === 0) return undefined;
  if (tables.length > 1) return 'invalid_blocks';
  const table = tables[0]!;
  if (!Array.isArray(table.rows) || table.rows.length === 0 || table.rows.length > MAX_ROWS) return 'invalid_blocks';
  if (table.column_settings !== undefined && (!Array.isArray(table.column_settings) || table.column_settings.length > MAX_CELLS)) return 'invalid_blocks';
  let characters = 0;
  for (const row of table.rows as unknown[]) {
    if (!Array.isArray(row) || row.length === 0 || row.length > MAX_CELLS) return 'invalid_blocks';
    for (const cell of row as Cell[]) {
      const length = cellLength(cell);
      if (length === undefined) return 'invalid_blocks';
      characters += length;
    }
  }
  return characters > MAX_TABLE_CHARS ? 'invalid_blocks' : undefined;
}

/** The characters a cell counts for, or undefined when Slack refuses it. */
function cellLength(cell: Cell): number | undefined {
  if (typeof cell !== 'object' || cell === null) return undefined;
  if (cell.type === 'raw_text') return typeof cell.text === 'string' && cell.text.length > 0 ? cell.text.length : undefined;
  if (cell.type === 'raw_number') return typeof cell.value === 'number' ? String(cell.text ?? cell.value).length : undefined;
  if (cell.type === 'rich_text') return Array.isArray(cell.elements) ? JSON.stringify(cell.elements).length : undefined;
  return undefined;
}
