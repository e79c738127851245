import type { Readable } from 'node:stream';
import type { HistoryMessage } from '../../agent/history.js';
import { parseExecuteArguments } from '../../agent/execute-tool.js';
import type { Notebook, NotebookCell, NotebookOutput } from './notebook-format.js';
import type { Workspace } from '../../workspace/workspace.js';

/**
 * The `notebook` command's export (issue 7): a thread's history as a Jupyter notebook (nbformat 4.5), built
 * from the stored history alone (no model call). User messages and answers become markdown cells;
 * each executed step becomes a code cell with what it printed, its error and its figures, numbered
 * 1..n in the order it ran, so the analysis can be re-run in Jupyter next to the thread's files.
 */

/** Figures above this size are referenced by name instead of embedded, to keep the file shareable. */
const MAX_EMBEDDED_FIGURE_BYTES = 10 * 1024 * 1024;

type StepMeta = NonNullable<NonNullable<HistoryMessage['meta']>['step']>;
type ToolMessage = Extract<HistoryMessage, { role: 'tool' }>;

export async function buildNotebook(
  history: HistoryMessage[],
  workspace: Workspace,
  options: { title?: string } = {},
): Promise<Buffer> {
  const builder = new CellBuilder();
  const title = options.title ?? 'Code interpreter session';
  builder.markdown(
    `# ${title}\n\nExported from a Slack thread. The code ran with the thread's workspace as its working directory: ` +
      'download its files (`download` in the thread) next to this notebook to re-run it.',
  );

  const toolResults = new Map<string, ToolMessage>();
  for (const message of history) if (message.role === 'tool') toolResults.set(message.tool_call_id, message);
  const rendered = new Set<string>();

  for (const message of history) {
    if (message.role === 'user') {
      const text = textOf(message.content);
      if (text.trim() !== '') builder.markdown(`**User:**\n\n${text}`);
    } else if (message.role === 'assistant') {
      const text = textOf(message.content ?? '');
      const calls = (message.tool_calls ?? []).filter((call) => call.type === 'function');
      if (calls.length === 0) {
        if (text.trim() !== '') builder.markdown(`**Answer:**\n\n${text}`);
        continue;
      }
      if (text.trim() !== '') builder.markdown(text);
      for (const call of calls) {
        const result = toolResults.get(call.id);
        if (result !== undefined) rendered.add(call.id);
        await builder.step(call.function.name, call.function.arguments, result, workspace);
      }
    } else if (message.role === 'tool' && !rendered.has(message.tool_call_id)) {
      // A result whose call is not in the history (should not happen): still shown, never dropped.
      await builder.step('execute', '', message, workspace);
    }
  }

  const notebook: Notebook = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      title,
      kernelspec: { name: 'python3', display_name: 'Python 3 (ipykernel)', language: 'python' },
      language_info: { name: 'python', file_extension: '.py', mimetype: 'text/x-python' },
    },
    cells: builder.cells,
  };
  return Buffer.from(`${JSON.stringify(notebook, null, 1)}\n`, 'utf8');
}

class CellBuilder {
  readonly cells: NotebookCell[] = [];
  private executionCount = 0;

  markdown(text: string): void {
    this.cells.push({ id: this.nextId(), cell_type: 'markdown', metadata: {}, source: toLines(text) });
  }

  /** One tool call and its result: a code cell with outputs when it ran, an honest note when it did not. */
  async step(name: string, rawArguments: string, result: ToolMessage | undefined, workspace: Workspace): Promise<void> {
    const parsed = parseExecuteArguments(name, rawArguments);
    const language = 'problem' in parsed ? 'python' : parsed.language;
    const step = result?.meta?.step;
    const code = step?.code ?? ('problem' in parsed ? undefined : parsed.code);

    if (step !== undefined) {
      this.executionCount += 1;
      this.code(cellSource(language, step.code), await stepOutputs(step, workspace), this.executionCount, {
        duration_ms: step.durationMs,
      });
      return;
    }
    const note = result === undefined ? 'No result was recorded for this step.' : textOf(result.content);
    if (code !== undefined) {
      this.code(cellSource(language, code), [], null, {});
      this.markdown(`*Step not run to completion: ${note.trim()}*`);
    } else {
      this.markdown(`*A tool call could not be run: ${note.trim()}*`);
    }
  }

  private code(source: string, outputs: NotebookOutput[], executionCount: number | null, metadata: Record<string, unknown>): void {
    this.cells.push({
      id: this.nextId(),
      cell_type: 'code',
      metadata,
      source: toLines(source),
      outputs,
      execution_count: executionCount,
    });
  }

  private nextId(): string {
    return `cell-${this.cells.length + 1}`;
  }
}

/** Shell steps become `%%bash` cells so they run as shell in Jupyter too. */
function cellSource(language: 'python' | 'shell', code: string): string {
  return language === 'shell' ? `%%bash\n${code}` : code;
}

async function stepOutputs(step: StepMeta, workspace: Workspace): Promise<NotebookOutput[]> {
  const outputs: NotebookOutput[] = [];
  if (step.stdout !== '') outputs.push({ output_type: 'stream', name: 'stdout', text: toLines(step.stdout) });
  if (step.stderr !== '') outputs.push({ output_type: 'stream', name: 'stderr', text: toLines(step.stderr) });
  for (const path of step.figures) outputs.push(await figureOutput(path, workspace));
  // A table the step showed (its compact text, as Jupyter shows a DataFrame's repr in text/plain).
  for (const table of step.tables ?? []) outputs.push({ output_type: 'display_data', data: { 'text/plain': toLines(table) }, metadata: {} });
  if (step.error !== null) {
    const traceback = step.error.traceback.replace(/\n+$/, '');
    outputs.push({
      output_type: 'error',
      ename: step.error.name,
      evalue: step.error.value,
      traceback: traceback === '' ? [`${step.error.name}: ${step.error.value}`] : traceback.split('\n'),
    });
  }
  return outputs;
}

/** The figure as an embedded PNG, or a plain-text note when it has since been deleted or is too big. */
async function figureOutput(path: string, workspace: Workspace): Promise<NotebookOutput> {
  const note = (text: string): NotebookOutput => ({ output_type: 'display_data', data: { 'text/plain': text }, metadata: {} });
  try {
    const entry = await workspace.stat(path);
    if (entry === undefined) return note(`[figure ${path} is no longer in the workspace]`);
    if (entry.size > MAX_EMBEDDED_FIGURE_BYTES) return note(`[figure ${path} is too large to embed; it is in the workspace]`);
    const bytes = await readAll(await workspace.read(path));
    return {
      output_type: 'display_data',
      data: { 'image/png': bytes.toString('base64'), 'text/plain': `<Figure ${path}>` },
      metadata: {},
    };
  } catch {
    // Deleted between stat and read, or an unsafe path recorded by a misbehaving step: say so, do not fail the export.
    return note(`[figure ${path} could not be read from the workspace]`);
  }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
  return Buffer.concat(chunks);
}

/** Message content as text: a string, or the text parts of a content array (images are left out). */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: unknown) => (typeof part === 'object' && part !== null && 'text' in part && typeof part.text === 'string' ? part.text : ''))
    .filter((text) => text !== '')
    .join('\n\n');
}

/** nbformat's multi-line string: lines that keep their `\n`, the last one without. */
function toLines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}
