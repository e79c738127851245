import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RunnerSession, hasModule, newWorkspace, removeWorkspaces, runOneShot } from './helpers/runner-process.js';

// Issue 16, rich tables: a DataFrame or Series as the last expression or passed to display()
// becomes a table entry in `displays` (docs/runner-protocol.md), with the full data as CSV when larger.

afterAll(removeWorkspaces);
const hasPandas = hasModule('pandas');

describe.skipIf(!hasPandas)('runner.py displays', () => {
  it('a small DataFrame as last expression is a table display, not a printed repr', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const result = await session.run('import pandas as pd\npd.DataFrame({"region": ["east", "west"], "amount": [10.5, None]})');
    expect(result.stdout).toBe('');
    expect(result.displays).toEqual([
      {
        kind: 'table',
        columns: ['region', 'amount'],
        indexColumns: 0,
        rows: [
          ['east', '10.5'],
          ['west', 'NaN'],
        ],
        totalRows: 2,
        totalColumns: 2,
        text: '  region  amount\n0   east    10.5\n1   west     NaN\n\n[2 rows x 2 columns]',
      },
    ]);
    await session.exit();
  });

  it('a large DataFrame carries its first 50 rows and 20 columns, and the whole frame as CSV', async () => {
    const workspace = newWorkspace();
    const { session } = await RunnerSession.start(workspace);
    const result = await session.run('import pandas as pd\nframe = pd.DataFrame({f"c{j}": range(j, j + 1000) for j in range(30)})\nframe');
    const [table] = result.displays;
    expect(table?.rows).toHaveLength(50);
    expect(table?.columns).toHaveLength(20);
    expect(table?.rows[49]?.[0]).toBe('49');
    expect({ totalRows: table?.totalRows, totalColumns: table?.totalColumns }).toEqual({ totalRows: 1000, totalColumns: 30 });
    expect(table?.text).toMatch(/\[1000 rows x 30 columns\]$/);
    expect(table?.text.length).toBeLessThanOrEqual(4_000);
    expect(table?.csv).toBe(`.oi/displays/${result.id}/1.csv`);
    const csv = readFileSync(join(workspace, table!.csv!), 'utf8').trimEnd().split('\n');
    expect(csv).toHaveLength(1001);
    expect(csv[0]).toBe(Array.from({ length: 30 }, (_, j) => `c${j}`).join(','));
    expect(result.files).toEqual([]); // .oi/ is never listed
    // The CSV is valid until the next step starts.
    await session.run('1');
    expect(existsSync(join(workspace, table!.csv!))).toBe(false);
    await session.exit();
  });

  it('display() shows Series with their index and prints other objects; long cells are cut', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const result = await session.run(
      [
        'import pandas as pd',
        'sales = pd.DataFrame({"region": ["east", "west", "east"], "amount": [1, 2, 3]})',
        'display(sales.groupby("region")["amount"].sum(), {"plain": 1})',
        'display(pd.DataFrame({"text": ["y" * 500]}))',
        'print("after")',
      ].join('\n'),
    );
    expect(result.stdout).toBe("{'plain': 1}\nafter\n");
    const [series, long] = result.displays;
    expect(series).toMatchObject({ columns: ['region', 'amount'], indexColumns: 1, rows: [['east', '4'], ['west', '2']], totalRows: 2, totalColumns: 1 });
    expect(series?.csv).toBeUndefined();
    expect(long?.rows[0]?.[0]).toBe(`${'y'.repeat(99)}…`);
    expect(long?.csv).toBe(`.oi/displays/${result.id}/2.csv`);
    await session.exit();
  });

  it('at most 10 tables per step; the others are printed, with a note', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const result = await session.run('import pandas as pd\nfor i in range(12):\n    display(pd.DataFrame({"i": [i]}))');
    expect(result.displays).toHaveLength(10);
    expect(result.notes).toContain('2 more tables were printed instead of displayed (at most 10 tables per step).');
    expect(result.stdout).toBe('    i\n0  10\n    i\n0  11\n');
    await session.exit();
  });

  it('one-shot mode: the compact text still reaches stdout unless the request says "displays": true', () => {
    const code = 'import pandas as pd\npd.Series([1, 2], name="n")';
    const legacy = runOneShot(newWorkspace(), code).result;
    expect(legacy.stdout).toBe('   n\n0  1\n1  2\n\n[2 rows x 1 columns]\n');
    expect(legacy.displays).toHaveLength(1);
    const current = runOneShot(newWorkspace(), code, { displays: true }).result;
    expect(current.stdout).toBe('');
    expect(current.displays[0]).toMatchObject({ columns: ['n'], rows: [['1'], ['2']] });
  });
});
