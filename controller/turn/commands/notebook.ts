import { loadHistory } from '../../agent/history.js';
import type { Logger } from '../../logger.js';
import { bufferSource, uploadOrThrow } from '../../slack/file-upload.js';
import type { SlackThread } from '../../slack/slack-thread.js';
import type { Workspace } from '../../workspace/workspace.js';
import { buildNotebook } from './notebook-export.js';

/** The `notebook` (`ノートブック`) command: the thread's work as a Jupyter notebook file in the thread. */
export async function runNotebookCommand(options: { thread: SlackThread; workspace: Workspace; logger: Logger }): Promise<void> {
  const { thread, workspace } = options;
  const history = await loadHistory(workspace);
  if (!history.some((message) => message.role === 'tool')) {
    await thread.post({ text: 'There is no code in this thread yet, so there is no notebook to export.' });
    return;
  }
  const notebook = await buildNotebook(history, workspace, { title: `Slack thread ${thread.threadTs}` });
  const initialComment = 'Here is the work of this thread as a Jupyter notebook.';
  await uploadOrThrow((files) => thread.uploadFiles(files, { initialComment }), bufferSource('thread.ipynb', notebook));
  options.logger.info('notebook shared', { bytes: notebook.length });
}
