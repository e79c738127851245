import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { printablePath, sendableFileName } from '../slack/file-names.js';
import { CANNOT_READ, TOO_LARGE_FOR_SLACK, type UploadSource } from '../slack/file-upload.js';
import type { SlackThread } from '../slack/slack-thread.js';
import type { FileEntry, Workspace } from '../workspace/workspace.js';

/**
 * Workspace files into the thread, shared by the files of a turn (share-turn-files.ts) and the `download`
 * command (commands/download.ts). Only regular files inside the thread's own workspace are ever read (the
 * Workspace refuses symbolic links and paths leaving its root); internal files (`.oi/`) are never offered.
 */

/** Files per Slack message (one completeUploadExternal call). */
const FILES_PER_MESSAGE = 5;

/** Files a person never wants posted: Python's byte-code caches, notebook checkpoints, half-written temporaries. */
export function isNoise(path: string): boolean {
  return path.split('/').some((part) => part === '__pycache__' || part === '.ipynb_checkpoints' || part.startsWith('.partial-'));
}

/** Posts files a few per message, `pauseMs` apart; the first message carries `firstComment`. */
export async function postFilesInBatches(options: {
  thread: SlackThread;
  workspace: Workspace;
  logger: Logger;
  files: Array<Pick<FileEntry, 'path' | 'size'>>;
  pauseMs: number;
  firstComment?: string;
}): Promise<{ posted: string[]; failed: Map<string, string> }> {
  const posted: string[] = [];
  const failed = new Map<string, string>();
  for (let start = 0; start < options.files.length; start += FILES_PER_MESSAGE) {
    if (start > 0 && options.pauseMs > 0) await sleep(options.pauseMs);
    const batch = options.files.slice(start, start + FILES_PER_MESSAGE).map((file) => uploadSource(options.workspace, file));
    const initialComment = start === 0 ? options.firstComment : undefined;
    const outcome = await options.thread.uploadFiles(batch, initialComment === undefined ? {} : { initialComment });
    posted.push(...outcome.posted);
    for (const [path, reason] of outcome.failed) failed.set(path, reason);
  }
  options.logger.info('files posted', { posted: posted.length, failed: failed.size });
  return { posted, failed };
}

/** One sentence naming the files that could not be posted (and whether `download` may help). */
export function describeFailures(failed: Map<string, string>): string {
  const list = [...failed].slice(0, 10).map(([path, reason]) => `\`${path}\` (${reason})`);
  const more = failed.size > 10 ? ` and ${failed.size - 10} more` : '';
  const retryable = [...failed.values()].some((reason) => reason !== TOO_LARGE_FOR_SLACK && reason !== CANNOT_READ);
  return `:warning: I could not post ${list.join(', ')}${more}.${retryable ? ' Write `download` to try again.' : ''}`;
}

/** A short note in the thread; a failure to post it is logged, not thrown. */
export async function postNote(thread: SlackThread, text: string, logger: Logger): Promise<void> {
  await thread.post({ text }).catch((error: unknown) => {
    logger.warn('could not post a files note', { error: describeError(error) });
  });
}

/**
 * A workspace file as Slack sees it: named by its base name, titled by its path (sub-folders stay visible), both
 * cleaned of what a person cannot read (file-names.ts), so an odd name is sent under a clean one, never dropped.
 */
function uploadSource(workspace: Workspace, file: Pick<FileEntry, 'path' | 'size'>): UploadSource {
  return { title: printablePath(file.path), filename: sendableFileName(file.path), size: file.size, open: () => workspace.read(file.path) };
}
