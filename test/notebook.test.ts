import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { HistoryMessage } from '../controller/agent/history.js';
import { buildNotebook } from '../controller/turn/commands/notebook-export.js';
import { validateNotebookStructure } from '../controller/turn/commands/notebook-format.js';
import type { Workspace } from '../controller/workspace/workspace.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';

// A real 1x1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');
const SYSTEM_PYTHON = '/usr/bin/python3';

let dataDir: string;
let workspace: Workspace;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'notebook-test-'));
  workspace = new LocalWorkspaceStore(dataDir).open({ team: 'T1', channel: 'C1', threadTs: '1700000000.000100' });
  await workspace.write('figure_1.png', PNG);
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

function call(id: string, language: string, code: string) {
  return { id, type: 'function' as const, function: { name: 'execute', arguments: JSON.stringify({ language, code }) } };
}

function step(code: string, fields: Partial<NonNullable<NonNullable<HistoryMessage['meta']>['step']>> = {}) {
  return { step: { code, stdout: '', stderr: '', error: null, figures: [], durationMs: 120, ...fields } };
}

const traceback = 'Traceback (most recent call last):\n  File "<step>", line 1, in <module>\nKeyError: \'price\'\n';

const history: HistoryMessage[] = [
  { role: 'user', content: 'I uploaded sales.csv to ./sales.csv\n\nWhat is the average amount?', meta: { ts: '1.1', user: 'U1' } },
  { role: 'assistant', content: 'Let me load the data.', tool_calls: [call('c1', 'python', "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(len(df))")] },
  { role: 'tool', tool_call_id: 'c1', content: 'stdout: 3', meta: step("import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(len(df))", { stdout: '3\n' }) },
  { role: 'assistant', content: null, tool_calls: [call('c2', 'python', "print(df.amount.mean())\ndf.amount.plot()\nplt.show()")] },
  {
    role: 'tool',
    tool_call_id: 'c2',
    content: 'stdout: 2.0',
    meta: step("print(df.amount.mean())\ndf.amount.plot()\nplt.show()", { stdout: '2.0\nmean done\n', figures: ['figure_1.png', 'figure_gone.png'] }),
  },
  { role: 'assistant', content: null, tool_calls: [call('c3', 'python', "df['price']")] },
  { role: 'tool', tool_call_id: 'c3', content: 'KeyError', meta: step("df['price']", { error: { name: 'KeyError', value: "'price'", traceback } }) },
  { role: 'assistant', content: null, tool_calls: [call('c4', 'shell', 'ls -1')] },
  { role: 'tool', tool_call_id: 'c4', content: 'stdout', meta: step('ls -1', { stdout: 'figure_1.png\nsales.csv\n' }) },
  { role: 'assistant', content: 'The average amount is **2.0**.' },
  { role: 'user', content: 'Now train a big model', meta: { ts: '1.2', user: 'U1' } },
  {
    role: 'assistant',
    content: null,
    tool_calls: [call('c5', 'python', 'import warnings\nwarnings.warn("slow")'), call('c6', 'python', 'train()'), call('c7', 'python', 'report()')],
  },
  { role: 'tool', tool_call_id: 'c5', content: 'stderr', meta: step('import warnings\nwarnings.warn("slow")', { stderr: 'UserWarning: slow\n' }) },
  { role: 'tool', tool_call_id: 'c6', content: 'The user stopped this step before it finished.' },
  { role: 'tool', tool_call_id: 'c7', content: 'Not run: the turn ended (cancelled).' },
];

function joined(source: unknown): string {
  return Array.isArray(source) ? source.join('') : String(source);
}

test('a realistic history becomes the right cells, in order, with their outputs', async () => {
  const buffer = await buildNotebook(history, workspace, { title: 'Sales analysis' });
  const notebook = JSON.parse(buffer.toString('utf8'));
  expect(validateNotebookStructure(notebook)).toStrictEqual([]);
  expect(notebook.nbformat).toBe(4);
  expect(notebook.nbformat_minor).toBe(5);
  expect(notebook.metadata.kernelspec.name).toBe('python3');
  expect(notebook.metadata.language_info.name).toBe('python');

  const cells = notebook.cells;
  const summary = cells.map((cell: { cell_type: string; execution_count?: number | null }) =>
    cell.cell_type === 'code' ? `code:${cell.execution_count}` : 'markdown',
  );
  expect(summary).toStrictEqual([
    'markdown', // title
    'markdown', // first question
    'markdown', // "Let me load the data."
    'code:1',
    'code:2',
    'code:3',
    'code:4',
    'markdown', // answer
    'markdown', // second question
    'code:5',
    'code:null', // stopped step
    'markdown', // ...and the note saying so
    'code:null', // not run
    'markdown',
  ]);
  expect(new Set(cells.map((cell: { id: string }) => cell.id)).size).toBe(cells.length);

  expect(joined(cells[0].source)).toMatch(/^# Sales analysis\n/);
  expect(joined(cells[1].source)).toMatch(/What is the average amount\?/);
  expect(joined(cells[2].source)).toBe('Let me load the data.');

  // Sources are arrays of lines that keep their newlines.
  expect(cells[3].source).toStrictEqual(['import pandas as pd\n', "df = pd.read_csv('sales.csv')\n", 'print(len(df))']);
  expect(cells[3].outputs).toStrictEqual([{ output_type: 'stream', name: 'stdout', text: ['3\n'] }]);

  const [stdout, figure, missing, ...rest] = cells[4].outputs;
  expect(stdout).toStrictEqual({ output_type: 'stream', name: 'stdout', text: ['2.0\n', 'mean done\n'] });
  expect(figure.output_type).toBe('display_data');
  expect(Buffer.from(figure.data['image/png'], 'base64')).toStrictEqual(PNG);
  expect(missing.output_type).toBe('display_data');
  expect(missing.data['image/png']).toBeUndefined();
  expect(missing.data['text/plain']).toMatch(/figure_gone\.png is no longer in the workspace/);
  expect(rest).toStrictEqual([]);

  expect(cells[5].outputs).toStrictEqual([
    {
      output_type: 'error',
      ename: 'KeyError',
      evalue: "'price'",
      traceback: ['Traceback (most recent call last):', '  File "<step>", line 1, in <module>', "KeyError: 'price'"],
    },
  ]);

  expect(joined(cells[6].source)).toBe('%%bash\nls -1');
  expect(cells[6].outputs).toStrictEqual([{ output_type: 'stream', name: 'stdout', text: ['figure_1.png\n', 'sales.csv\n'] }]);

  expect(joined(cells[7].source)).toBe('**Answer:**\n\nThe average amount is **2.0**.');
  expect(joined(cells[8].source)).toMatch(/Now train a big model/);
  expect(cells[9].outputs).toStrictEqual([{ output_type: 'stream', name: 'stderr', text: ['UserWarning: slow\n'] }]);

  expect(joined(cells[10].source)).toBe('train()');
  expect(cells[10].outputs).toStrictEqual([]);
  expect(joined(cells[11].source)).toMatch(/stopped this step before it finished/);
  expect(joined(cells[12].source)).toBe('report()');
  expect(joined(cells[13].source)).toMatch(/Not run: the turn ended \(cancelled\)/);
});

test('an empty history gives a notebook with only the title cell', async () => {
  const notebook = JSON.parse((await buildNotebook([], workspace, { title: 'Nothing yet' })).toString('utf8'));
  expect(validateNotebookStructure(notebook)).toStrictEqual([]);
  expect(notebook.cells).toHaveLength(1);
  expect(notebook.cells[0].cell_type).toBe('markdown');
  expect(joined(notebook.cells[0].source)).toMatch(/^# Nothing yet/);
});

/** Broken variants of a good notebook: each must be refused by our check (and by nbformat, below). */
function brokenVariants(good: Record<string, unknown>): Array<[string, unknown]> {
  const copy = () => structuredClone(good) as { cells: Array<Record<string, unknown>>; [key: string]: unknown };
  const codeIndex = copy().cells.findIndex((cell) => cell.cell_type === 'code');
  const variants: Array<[string, (notebook: ReturnType<typeof copy>) => void]> = [
    ['code cell without outputs', (notebook) => delete notebook.cells[codeIndex]!.outputs],
    ['markdown cell with outputs', (notebook) => (notebook.cells[0]!.outputs = [])],
    ['cell id with a space', (notebook) => (notebook.cells[0]!.id = 'cell 1')],
    ['duplicate cell ids', (notebook) => (notebook.cells[1]!.id = notebook.cells[0]!.id)],
    ['source as a number', (notebook) => (notebook.cells[0]!.source = 42)],
    ['stream text as a number', (notebook) => ((notebook.cells[codeIndex]!.outputs as Array<Record<string, unknown>>)[0]!.text = 3)],
    ['unknown output type', (notebook) => ((notebook.cells[codeIndex]!.outputs as Array<Record<string, unknown>>)[0]!.output_type = 'print')],
    ['traceback as a string', (notebook) => (notebook.cells[codeIndex]!.outputs = [{ output_type: 'error', ename: 'E', evalue: 'v', traceback: 'x' }])],
    ['display_data without metadata', (notebook) => (notebook.cells[codeIndex]!.outputs = [{ output_type: 'display_data', data: {} }])],
    ['negative execution count', (notebook) => (notebook.cells[codeIndex]!.execution_count = -1)],
    ['nbformat 3', (notebook) => (notebook.nbformat = 3)],
    ['nbformat_minor 4, which has no cell ids', (notebook) => (notebook.nbformat_minor = 4)],
  ];
  return variants.map(([name, mutate]) => {
    const notebook = copy();
    mutate(notebook);
    return [name, notebook];
  });
}

test('validateNotebookStructure catches real mistakes', async () => {
  const good = JSON.parse((await buildNotebook(history, workspace)).toString('utf8'));
  expect(validateNotebookStructure(good)).toStrictEqual([]);
  expect(validateNotebookStructure(null)).not.toStrictEqual([]);
  for (const [name, notebook] of brokenVariants(good)) {
    expect(validateNotebookStructure(notebook), `not caught: ${name}`).not.toStrictEqual([]);
  }
});

const nbformatCheck = spawnSync(SYSTEM_PYTHON, ['-c', 'import nbformat'], { encoding: 'utf8' });
const nbformatMissing = nbformatCheck.status === 0 ? false : 'nbformat is not installed for /usr/bin/python3 (apt-get install python3-nbformat)';

test.skipIf(Boolean(nbformatMissing))('the real nbformat library accepts the notebook and rejects the broken variants', async () => {
  const good = JSON.parse((await buildNotebook(history, workspace)).toString('utf8'));
  const empty = JSON.parse((await buildNotebook([], workspace)).toString('utf8'));
  const variants = brokenVariants(good);
  const script = [
    'import json, sys, nbformat',
    'results = []',
    'for notebook in json.load(sys.stdin):',
    '    try:',
    '        nbformat.validate(notebook, version=4, version_minor=5, repair_duplicate_cell_ids=False)',
    '        results.append("valid")',
    '    except nbformat.ValidationError as error:',
    '        results.append("invalid: " + str(error).splitlines()[0])',
    'print(json.dumps(results))',
  ].join('\n');
  const run = spawnSync(SYSTEM_PYTHON, ['-W', 'ignore', '-c', script], {
    input: JSON.stringify([good, empty, ...variants.map(([, notebook]) => notebook)]),
    encoding: 'utf8',
  });
  expect(run.status, run.stderr).toBe(0);
  const results = JSON.parse(run.stdout) as string[];
  expect(results[0], 'the exported notebook').toBe('valid');
  expect(results[1], 'the empty notebook').toBe('valid');
  variants.forEach(([name], index) => expect(results[index + 2]!, `nbformat accepted: ${name}`).toMatch(/^invalid/));
});
