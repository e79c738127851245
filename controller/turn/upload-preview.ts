import { randomBytes } from 'node:crypto';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { SandboxSession } from '../sandbox/sandbox.js';

/**
 * Upload preview (issue 7): when tables are uploaded, one sandbox step reads each of them (never the
 * controller: the bytes stay where the code runs) and prints its columns, types and row count, so the
 * model's first step is already informed. The step must not disturb the thread: its code lives in one
 * function with a unique name that is deleted at the end (the runner saves every global between
 * steps), imports stay local to it, and it creates no files.
 */

const TABLE_PATTERN = /\.(csv|tsv|csv\.gz|tsv\.gz|xlsx|xlsm|xls|parquet|pq)$/i;

/** One step in the turn's session (the thread's workspace) describes the uploaded tables; '' when there are none. */
export async function previewUploads(options: {
  session: SandboxSession;
  paths: string[];
  timeoutSec: number;
  logger: Logger;
  signal?: AbortSignal;
}): Promise<string> {
  const tables = options.paths.filter((path) => TABLE_PATTERN.test(path));
  if (tables.length === 0) return '';
  const functionName = `_oi_preview_${randomBytes(8).toString('hex')}`;
  try {
    const result = await options.session.run(
      { language: 'python', code: previewCode(functionName, tables), timeoutSec: options.timeoutSec },
      options.signal === undefined ? {} : { signal: options.signal },
    );
    if (result.error !== null) {
      // A timeout still leaves the files described so far in stdout: each is printed when complete.
      options.logger.warn('upload preview step failed', { error: result.error.name, limit: result.limit, tables: tables.length });
    }
    const text = result.stdout.trim();
    if (text === '') return '';
    return `A first look at the uploaded tables (read in the sandbox; no variables were created):\n${text}`;
  } catch (error) {
    options.logger.warn('upload preview could not run', { error: describeError(error) });
    return '';
  }
}

/** The step's Python code; `paths` go in as a JSON list, which is also a valid Python literal. */
function previewCode(functionName: string, paths: string[]): string {
  return `def ${functionName}(paths):
${PREVIEW_BODY}
try:
    ${functionName}(${JSON.stringify(paths)})
finally:
    del ${functionName}
`;
}

// Indented as the body of the function above. Everything it defines or imports is local to it.
const PREVIEW_BODY = String.raw`
    import csv, gzip, io, os
    import pandas as pd
    SAMPLE_ROWS = 10000
    MAX_COLUMNS = 40

    def columns_line(frame):
        parts = ['%s (%s)' % (name, dtype) for name, dtype in zip(frame.columns[:MAX_COLUMNS], frame.dtypes[:MAX_COLUMNS])]
        more = len(frame.columns) - MAX_COLUMNS
        return '  columns: ' + ', '.join(parts) + (' ... and %d more columns' % more if more > 0 else '')

    def head_bytes(path, size=65536):
        opener = gzip.open if path.lower().endswith('.gz') else open
        with opener(path, 'rb') as handle:
            return handle.read(size)

    def text_format(path):
        head = head_bytes(path)
        # cut after the last newline: a multibyte letter is never split there (UTF-8 and Shift_JIS alike)
        head = head[: head.rfind(b'\n') + 1] or head
        for encoding in ('utf-8-sig', 'cp932', 'latin-1'):
            try:
                sample = head.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        if '.tsv' in path.lower():
            return encoding, '\t'
        try:
            return encoding, csv.Sniffer().sniff(sample, delimiters=',;\t|').delimiter
        except csv.Error:
            return encoding, ','

    def describe_text(path):
        encoding, separator = text_format(path)
        options = dict(sep=separator, encoding=encoding, encoding_errors='replace', low_memory=False)
        sample = pd.read_csv(path, nrows=SAMPLE_ROWS, **options)
        rows = len(sample)
        if rows == SAMPLE_ROWS:
            # count every row in chunks of one column: the file is never held whole in memory
            rows = sum(len(chunk) for chunk in pd.read_csv(path, usecols=[0], chunksize=250000, dtype=str, **options))
        notes = []
        if separator != ',':
            notes.append('separator %r' % separator)
        if encoding not in ('utf-8-sig', 'utf-8'):
            notes.append("encoding %r: pass encoding=%r to pandas" % (encoding, encoding))
        if rows > SAMPLE_ROWS:
            notes.append('types inferred from the first %d rows' % SAMPLE_ROWS)
        head = '%s: %d rows x %d columns' % (path, rows, len(sample.columns))
        return [head + (' (' + '; '.join(notes) + ')' if notes else ''), columns_line(sample)]

    def describe_excel(path):
        book = pd.ExcelFile(path)
        lines = ['%s: Excel workbook with %d sheet(s)' % (path, len(book.sheet_names))]
        for sheet in book.sheet_names[:10]:
            frame = book.parse(sheet)
            lines.append('  sheet %r: %d rows x %d columns' % (sheet, len(frame), len(frame.columns)))
            lines.append('  ' + columns_line(frame))
        if len(book.sheet_names) > 10:
            lines.append('  ... and %d more sheets' % (len(book.sheet_names) - 10))
        book.close()
        return lines

    def describe_parquet(path):
        try:
            import pyarrow.parquet as parquet
        except ImportError:
            frame = pd.read_parquet(path)
            return ['%s: %d rows x %d columns' % (path, len(frame), len(frame.columns)), columns_line(frame)]
        table = parquet.ParquetFile(path)
        schema = table.schema_arrow
        frame = schema.empty_table().to_pandas()
        return ['%s: %d rows x %d columns' % (path, table.metadata.num_rows, len(schema.names)), columns_line(frame)]

    for path in paths:
        lower = path.lower()
        try:
            if lower.endswith(('.xlsx', '.xlsm', '.xls')):
                lines = describe_excel(path)
            elif lower.endswith(('.parquet', '.pq')):
                lines = describe_parquet(path)
            else:
                lines = describe_text(path)
        except Exception as exc:
            lines = ['%s: could not read it as a table (%s: %s)' % (path, type(exc).__name__, ' '.join(str(exc).split())[:200])]
        print('\n'.join(lines), flush=True)`;
