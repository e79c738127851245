import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { validateNotebookStructure } from '../controller/turn/commands/notebook-format.js';
import { executeCall, lastUserText } from './fakes/fake-openai.js';
import { localBackend, startHarness, stopHarness, type Harness } from './helpers/harness.js';

/** Issue 7, taking the work away (`notebook`) and the upload preview, through the whole bot. */

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface Cell {
  cell_type: string;
  source: string | string[];
  outputs?: Array<{ output_type: string; name?: string; text?: string | string[]; data?: Record<string, string | string[]> }>;
  execution_count?: number | null;
}

const joined = (text: string | string[] | undefined) => (Array.isArray(text) ? text.join('') : (text ?? ''));

describe('notebook export and upload preview (issue 7)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(localBackend);
  });
  afterAll(async () => stopHarness(h));

  test('`notebook` and `ノートブック` post the thread as a valid .ipynb with the cells in order, without a model call', async () => {
    const tableCode = "import pandas as pd\ndf = pd.DataFrame({'x': [1, 2, 3], 'y': [2, 4, 6]})\nprint('total', df['y'].sum())";
    const plotCode = "import matplotlib.pyplot as plt\nplt.plot(df['x'], df['y'])\nplt.title('y against x')\nplt.show()";
    h.ai.enqueue(
      { content: 'Build a small table', ...executeCall(tableCode) },
      executeCall(plotCode),
      { content: 'The total is **12**; the plot is attached.' },
    );
    const { threadTs } = await h.mention('analyse x and y please');
    await h.waitForReply(threadTs, /The total is/, 'C1', 30_000);

    const requestsBefore = h.ai.requests.length;
    await h.mention('notebook', { threadTs });
    const first = await h.slack.waitFor(() => h.slack.uploads.find((upload) => upload.threadTs === threadTs && upload.filename.endsWith('.ipynb')), 20_000);
    await h.mention('ノートブック', { threadTs });
    const second = await h.slack.waitFor(() => h.slack.uploads.filter((upload) => upload.threadTs === threadTs && upload.filename.endsWith('.ipynb'))[1], 20_000);
    expect(h.ai.requests.length, 'no model call for either command').toBe(requestsBefore);
    expect(first.channelId).toBe('C1');

    for (const upload of [first, second]) {
      const notebook = JSON.parse(upload.bytes.toString('utf8')) as { nbformat: number; cells: Cell[] };
      expect(validateNotebookStructure(notebook)).toStrictEqual([]);
      expect(notebook.nbformat).toBe(4);
      const cells = notebook.cells;
      expect(cells.map((cell) => cell.cell_type), cells.map((cell) => joined(cell.source).slice(0, 60)).join(' | ')).toStrictEqual(['markdown', 'markdown', 'markdown', 'code', 'code', 'markdown']);
      expect(joined(cells[0]!.source), 'a title').toMatch(/^# /);
      expect(joined(cells[1]!.source)).toBe('**User:**\n\nanalyse x and y please');
      expect(joined(cells[2]!.source)).toBe('Build a small table');

      const [table, plot] = [cells[3]!, cells[4]!];
      expect(joined(table.source)).toBe(tableCode);
      expect(table.execution_count).toBe(1);
      expect(table.outputs?.map((output) => [output.output_type, output.name, joined(output.text)])).toStrictEqual([['stream', 'stdout', 'total 12\n']]);

      expect(joined(plot.source)).toBe(plotCode);
      expect(plot.execution_count).toBe(2);
      const images = (plot.outputs ?? []).filter((output) => output.output_type === 'display_data' && output.data?.['image/png'] !== undefined);
      expect(images, JSON.stringify(plot.outputs).slice(0, 300)).toHaveLength(1);
      const png = Buffer.from(joined(images[0]!.data!['image/png']), 'base64');
      expect(png.subarray(0, 8), 'a PNG').toStrictEqual(PNG_SIGNATURE);
      expect(png.length, 'a real PNG of the figure, not a stub').toBeGreaterThan(1000);

      expect(joined(cells[5]!.source)).toBe('**Answer:**\n\nThe total is **12**; the plot is attached.');
    }
    expect(h.slack.unexpected).toStrictEqual([]);
  });

  test('`notebook` in a thread without code says so and calls no model', async () => {
    const { threadTs } = await h.mention('just chatting');
    await h.waitForReply(threadTs, /echo: just chatting/);
    const requestsBefore = h.ai.requests.length;
    await h.mention('Notebook', { threadTs });
    await h.waitForReply(threadTs, /no code in this thread yet/);
    expect(h.ai.requests.length).toBe(requestsBefore);
    expect(h.slack.uploads.filter((upload) => upload.threadTs === threadTs)).toStrictEqual([]);
  });

  test("an uploaded CSV's columns, types and row count are in the model's first request", async () => {
    const csv = 'region,amount,day\nnorth,10,2024-01-01\nsouth,20.5,2024-01-02\neast,7,2024-01-03\nwest,1,2024-01-04\n';
    const file = h.slack.addFile({ name: 'sales.csv', content: csv, mimetype: 'text/csv' });
    const requestsBefore = h.ai.requests.length;
    const { threadTs } = await h.mention('what is in this file?', { files: [file] });
    await h.waitForReply(threadTs, /echo: what is in this file\?/, 'C1', 30_000);

    const request = h.ai.requests[requestsBefore]!;
    const text = lastUserText(request.body);
    expect(text).toMatch(/what is in this file\?/);
    expect(text, text).toMatch(/sales\.csv: 4 rows x 3 columns/);
    expect(text, text).toMatch(/columns: region \((object|str|string)\), amount \(float64\), day \((object|str|string)\)/);
    expect(h.ai.requests.length - requestsBefore, 'the preview itself costs no model call').toBe(1);
    expect(h.slack.downloads).toContainEqual(expect.objectContaining({ fileId: file.id, authorized: true }));
  });
});
