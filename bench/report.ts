import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { round } from './measure.js';

/**
 * One line of the final table: a figure of ours beside its baseline measured in the same run.
 * `key` is stable across runs so that a later run can be compared with bench/results/baseline.json.
 */
export interface FigureRow {
  key: string;
  /** e.g. "1 ack latency" */
  figure: string;
  /** e.g. "p50 (ms)" */
  measure: string;
  ours: number;
  /** The same measure for the baseline, when the figure has one. */
  baseline?: number;
  /** What the baseline is, e.g. "bare Bolt app". */
  baselineName?: string;
  /** The target in words, e.g. "ratio <= 1.2". */
  target?: string;
  met?: boolean;
}

export interface BenchResults {
  version: 1;
  startedAt: string;
  quick: boolean;
  environment: Record<string, string | number>;
  rows: FigureRow[];
  /** Per-figure breakdowns (where the time goes, sizes, counts). */
  details: Record<string, unknown>;
}

export function ratioOf(row: FigureRow): number | undefined {
  if (row.baseline === undefined || row.baseline === 0) return undefined;
  return row.ours / row.baseline;
}

function cell(value: number | undefined): string {
  if (value === undefined) return '';
  if (!Number.isFinite(value)) return String(value);
  return String(round(value));
}

function delta(row: FigureRow, previous: Map<string, FigureRow> | undefined): string {
  const old = previous?.get(row.key);
  if (old === undefined || old.ours === 0 || !Number.isFinite(old.ours)) return '';
  const change = (row.ours - old.ours) / Math.abs(old.ours);
  return `${change >= 0 ? '+' : ''}${(change * 100).toFixed(0)}%`;
}

/** The final table: one line per row, columns padded; a delta column when a baseline file was read. */
export function formatTable(rows: readonly FigureRow[], previous?: Map<string, FigureRow>): string {
  const header = ['figure', 'measure', 'ours', 'baseline', 'ratio', 'target', ...(previous ? ['vs baseline.json'] : [])];
  const lines = rows.map((row) => {
    const ratio = ratioOf(row);
    const target = row.target === undefined ? '' : `${row.target} ${row.met === undefined ? '' : row.met ? '(met)' : '(NOT met)'}`.trim();
    return [
      row.figure,
      row.measure,
      cell(row.ours),
      row.baseline === undefined ? '' : `${cell(row.baseline)} ${row.baselineName ?? ''}`.trim(),
      ratio === undefined ? '' : `${round(ratio)}x`,
      target,
      ...(previous ? [delta(row, previous)] : []),
    ];
  });
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column]!.length)));
  const render = (line: string[]) => line.map((text, column) => text.padEnd(widths[column]!)).join('  ').trimEnd();
  return [render(header), render(widths.map((width) => '-'.repeat(width))), ...lines.map(render)].join('\n');
}

export function writeResults(path: string, results: BenchResults): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(results, null, 2)}\n`);
}

/** The rows of an earlier run by key, or undefined when there is no readable file. */
export function readPreviousRows(path: string): { rows: Map<string, FigureRow>; quick: boolean } | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const results = JSON.parse(readFileSync(path, 'utf8')) as BenchResults;
    return { rows: new Map(results.rows.map((row) => [row.key, row])), quick: results.quick };
  } catch {
    return undefined;
  }
}
