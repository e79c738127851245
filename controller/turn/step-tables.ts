import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { SandboxSession, StepResult, TableDisplay } from '../sandbox/sandbox.js';
import { bufferSource, type UploadSource } from '../slack/file-upload.js';
import type { SlackThread } from '../slack/slack-thread.js';
import { csvOfRows, tableMessage } from '../slack/table-message.js';
import type { Workspace } from '../workspace/workspace.js';

/**
 * Rich tables (issue 16): each table a step showed goes into the thread as its own message with a native table
 * block (slack/table-message.ts), and, when the block shows only part of the frame, the whole frame as a CSV file.
 *
 * Where: as soon as the step has run, before its result goes back to the agent loop, in a message of its own
 * (after the status message, or under the streamed reply). Not after the answer, because the CSV a table points at
 * (`.oi/displays/<step>/<n>.csv`) is valid only until the thread's next step starts, and the next step may start
 * right after the model's next reply; not inside the stream, because a table is one per message and Slack does not
 * document table blocks in stream chunks. The user sees the data when it exists, as in a notebook's Out cell.
 */

/** The session with every step's tables posted before the step's result is returned; steps are counted from 1. */
export function showingTables(session: SandboxSession, show: (result: StepResult, step: number) => Promise<void>): SandboxSession {
  let steps = 0;
  return {
    run: async (request, options) => {
      const result = await session.run(request, options);
      steps += 1;
      if ((result.displays ?? []).length > 0) await show(result, steps);
      return result;
    },
    release: () => session.release(),
  };
}

export async function postStepTables(options: { thread: SlackThread; workspace: Workspace; result: StepResult; step: number; logger: Logger }): Promise<void> {
  const displays = options.result.displays ?? [];
  for (const [index, display] of displays.entries()) {
    const caption = displays.length === 1 ? `Step ${options.step} · table` : `Step ${options.step} · table ${index + 1}`;
    try {
      const { message, partial } = tableMessage(display, caption);
      await options.thread.post(message);
      if (partial) await attachWholeTable(options, display, `table-${options.step}-${index + 1}.csv`);
    } catch (error) {
      options.logger.warn('table not shown', { error: describeError(error) });
    }
  }
}

/** The runner's CSV of the whole frame, or one made from the rows when they are the whole frame; else a note. */
async function attachWholeTable(options: { thread: SlackThread; workspace: Workspace; logger: Logger }, display: TableDisplay, filename: string): Promise<void> {
  const source = await wholeTable(options.workspace, display, filename);
  const note = `The whole table (${display.totalRows.toLocaleString('en-US')} rows) as CSV:`;
  if (source === undefined) {
    await options.thread.post({ text: '_The whole table could not be saved as a file; ask me to write it to a CSV file._' });
    return;
  }
  const outcome = await options.thread.uploadFiles([source], { initialComment: note });
  if (outcome.failed.size > 0) options.logger.warn('table CSV not posted', { reason: [...outcome.failed.values()].join('; ') });
}

async function wholeTable(workspace: Workspace, display: TableDisplay, filename: string): Promise<UploadSource | undefined> {
  if (display.csv !== undefined) {
    const entry = await workspace.stat(display.csv).catch(() => undefined);
    if (entry !== undefined && entry.size > 0) return { title: filename, filename, size: entry.size, open: () => workspace.read(entry.path) };
  }
  const carriesAll = display.rows.length === display.totalRows && display.columns.length - display.indexColumns >= display.totalColumns;
  return carriesAll ? bufferSource(filename, Buffer.from(csvOfRows(display), 'utf8')) : undefined;
}
