/**
 * Upload preview (issue 7): the real LocalSandbox runs the real runner.py on real Python (with pandas) and
 * describes uploaded tables, leaving the thread's Python state and files as they were.
 */

import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLogger, silentLogger } from '../controller/logger.js';
import { LocalSandbox } from '../controller/sandbox/local/local-sandbox.js';
import { previewUploads } from '../controller/turn/upload-preview.js';
import { LocalWorkspaceStore, type LocalWorkspace } from '../controller/workspace/local-workspace.js';
import { jailIfAvailable } from './helpers/jail-available.js';

describe('previewUploads', () => {
  /** What the preview logged, shown when an assertion fails (a failed step is only logged, never thrown). */
  const logLines: string[] = [];
  const logger = createLogger({ write: (line) => logLines.push(line) });
  let sandbox: LocalSandbox;
  let store: LocalWorkspaceStore;
  let threadCounter = 0;

  beforeAll(async () => {
    sandbox = new LocalSandbox({ network: 'off', isolation: jailIfAvailable(), logger: silentLogger });
    store = new LocalWorkspaceStore(await mkdtemp(join(tmpdir(), 'oi-preview-')));
  });
  afterAll(() => sandbox.close?.());

  const newWorkspace = () => store.open({ team: 'T1', channel: 'C1', threadTs: `1700000300.${String(++threadCounter).padStart(6, '0')}` }) as LocalWorkspace;
  const run = (workspace: LocalWorkspace, code: string) => sandbox.run(workspace, { language: 'python', code, timeoutSec: 60 });
  const steps = async (workspace: LocalWorkspace) => (await readdir(join(workspace.root, '.oi', 'steps')).catch(() => [])).length;

  test('describes CSV, TSV and Shift_JIS tables, and leaves no variables or files behind', async () => {
    const workspace = newWorkspace();
    await workspace.write('sales.csv', 'date,region,amount\n2024-01-01,east,100.5\n2024-01-02,west,250\n2024-01-03,east,75\n');
    await workspace.write('counts.tsv', 'name\tcount\nfoo\t1\nbar\t2\n');
    // "名前;値" in Shift_JIS, as Excel in Japan saves CSV
    await workspace.write('japan.csv', Buffer.from('96bc914f3b926c0d0a8e5293633b310d0a', 'hex'));
    await workspace.write('notes.txt', 'not a table');
    await workspace.write('broken.xlsx', 'this is not a workbook');
    const before = await run(workspace, 'kept = 41');
    expect(before.error).toBeNull();
    const filesBefore = (await workspace.list()).map((entry) => entry.path);

    const text = await previewUploads({
      session: sandbox.session(workspace),
      paths: ['sales.csv', 'counts.tsv', 'japan.csv', 'notes.txt', 'broken.xlsx'],
      timeoutSec: 60,
      logger,
    });
    expect(text, logLines.join('\n')).toMatch(/^A first look at the uploaded tables/);
    expect(text).toMatch(/sales\.csv: 3 rows x 3 columns\n {2}columns: date \(object\), region \(object\), amount \(float64\)/);
    expect(text).toMatch(/counts\.tsv: 2 rows x 2 columns \(separator '\\t'\)\n {2}columns: name \(object\), count \(int64\)/);
    expect(text).toMatch(/japan\.csv: 1 rows x 2 columns \(separator ';'; encoding 'cp932': pass encoding='cp932' to pandas\)\n {2}columns: 名前 \(object\), 値 \(int64\)/);
    expect(text).toMatch(/broken\.xlsx: could not read it as a table \(/);
    expect(text).not.toMatch(/notes\.txt/);

    const after = await run(workspace, "print(kept + 1, sorted(name for name in globals() if not name.startswith('__')))");
    expect(after.error).toBeNull();
    expect(after.stdout.trim(), 'the preview left no names in the thread').toBe("42 ['kept']");
    expect((await workspace.list()).map((entry) => entry.path), 'the preview created no files').toStrictEqual(filesBefore);
  });

  test('a large CSV gets its full row count with types from a sample', async () => {
    const workspace = newWorkspace();
    const rows = 25_000;
    const lines = ['id,value,label'];
    for (let index = 0; index < rows; index++) lines.push(`${index},${index * 0.5},"item, ${index}"`);
    await workspace.write('big.csv', lines.join('\n') + '\n');
    const text = await previewUploads({ session: sandbox.session(workspace), paths: ['big.csv'], timeoutSec: 60, logger });
    expect(text).toMatch(/big\.csv: 25000 rows x 3 columns \(types inferred from the first 10000 rows\)/);
    expect(text).toMatch(/columns: id \(int64\), value \(float64\), label \(object\)/);
  });

  test('nothing tabular runs no step; a step that cannot run gives an empty preview instead of an error', async () => {
    const workspace = newWorkspace();
    await workspace.write('photo.png', 'png');
    expect(await previewUploads({ session: sandbox.session(workspace), paths: ['photo.png', 'doc.pdf'], timeoutSec: 60, logger: silentLogger })).toBe('');
    expect(await steps(workspace), 'no sandbox step for non-tabular files').toBe(0);

    await workspace.write('data.csv', 'a\n1\n');
    const cancelled = new AbortController();
    cancelled.abort();
    const text = await previewUploads({ session: sandbox.session(workspace), paths: ['data.csv'], timeoutSec: 60, logger: silentLogger, signal: cancelled.signal });
    expect(text).toBe('');
  });
});
