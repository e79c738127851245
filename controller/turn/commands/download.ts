import type { Logger } from '../../logger.js';
import type { SlackThread } from '../../slack/slack-thread.js';
import type { Workspace } from '../../workspace/workspace.js';
import { printablePath } from '../../slack/file-names.js';
import { describeFailures, isNoise, postFilesInBatches, postNote } from '../post-files.js';

/** Pause between the messages of a `download`, to stay well inside Slack's rate limits. */
const DEFAULT_BATCH_PAUSE_MS = 1500;
/** More than this in one `download` would flood the thread; the rest is better zipped. */
const MAX_DOWNLOAD_FILES = 100;

/** The `download` (`ダウンロード`) command: every non-internal file of the thread, sub-folders included. */
export async function runDownloadCommand(options: {
  thread: SlackThread;
  workspace: Workspace;
  logger: Logger;
  /** Pause between messages; tests make it short. */
  batchPauseMs?: number;
}): Promise<{ shared: string[]; failed: string[] }> {
  const { thread, logger } = options;
  const entries = (await options.workspace.list()).filter((entry) => !isNoise(entry.path));
  const files = entries.filter((entry) => entry.size > 0);
  if (files.length === 0) {
    await postNote(
      thread,
      entries.length === 0
        ? "There are no files in this thread yet. Attach files to a mention, or ask me to create some."
        : 'The files in this thread are all empty, so there is nothing to post.',
      logger,
    );
    return { shared: [], failed: [] };
  }
  const chosen = files.slice(0, MAX_DOWNLOAD_FILES);
  const intro =
    chosen.length === 1 ? 'Here is the file of this thread:' : `Here are the ${chosen.length} files of this thread:`;
  const outcome = await postFilesInBatches({
    ...options,
    files: chosen,
    pauseMs: options.batchPauseMs ?? DEFAULT_BATCH_PAUSE_MS,
    firstComment: intro,
  });

  // Every file is posted or named: what Slack cannot take (empty files, more than one download's worth) is listed.
  const notes: string[] = [];
  const left = files.slice(MAX_DOWNLOAD_FILES).map((entry) => entry.path);
  if (left.length > 0) {
    notes.push(`${left.length} more files were not posted (at most ${MAX_DOWNLOAD_FILES} at once): ${nameList(left)}. Ask me to zip them into one file.`);
  }
  const empty = entries.filter((entry) => entry.size === 0).map((entry) => entry.path);
  if (empty.length > 0) {
    notes.push(`${empty.length === 1 ? 'This file is' : 'These files are'} empty, and Slack takes no empty file: ${nameList(empty)}.`);
  }
  if (outcome.failed.size > 0) notes.push(describeFailures(outcome.failed));
  if (notes.length > 0) await postNote(thread, notes.join('\n'), logger);
  return { shared: outcome.posted, failed: [...outcome.failed.keys()] };
}

/** Up to ten paths as readable code spans, then how many more. */
function nameList(paths: string[]): string {
  const shown = paths.slice(0, 10).map((path) => `\`${printablePath(path).replaceAll('`', "'")}\``);
  return paths.length > 10 ? `${shown.join(', ')} and ${paths.length - 10} more` : shown.join(', ');
}
