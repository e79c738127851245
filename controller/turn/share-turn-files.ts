import { setTimeout as sleep } from 'node:timers/promises';
import type { WebClient } from '@slack/web-api';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { isInternalPath, safeRelativePath, type FileEntry, type Workspace } from '../workspace/workspace.js';
import { postWorkspaceFiles, TOO_LARGE_FOR_SLACK, type FileToPost } from '../slack/file-upload.js';

/**
 * Files from the workspace back into the thread (issue 3): after each turn the files it created or
 * changed (charts first), and everything on `download`. Only regular files inside the thread's own
 * workspace are ever read (the Workspace refuses symbolic links and paths leaving its root); internal
 * files (`.oi/`) are never offered.
 */

/** Files per Slack message (one completeUploadExternal call). */
const FILES_PER_MESSAGE = 5;
/** Pause between the messages of a `download`, to stay well inside Slack's rate limits. */
const DEFAULT_BATCH_PAUSE_MS = 1500;
/** More than this in one `download` would flood the thread; the rest is better zipped. */
export const MAX_DOWNLOAD_FILES = 100;

const IMAGE_PATTERN = /\.(png|jpe?g|gif|svg|webp)$/i;

export async function shareTurnFiles(options: {
  client: WebClient;
  channel: string;
  threadTs: string;
  workspace: Workspace;
  /** Created/modified paths from this turn's steps (may include internal or deleted ones). */
  paths: string[];
  /** Figure paths, shared first. */
  figures: string[];
  max: number;
  logger: Logger;
}): Promise<{ shared: string[]; notShared: number; failed: string[] }> {
  const { workspace, logger } = options;
  const ordered = orderForSharing(options.figures, options.paths);
  const shareable: FileToPost[] = [];
  for (const path of ordered) {
    const entry = await workspace.stat(path).catch((error: unknown) => {
      logger.warn('could not stat a file to share', { error: describeError(error) });
      return undefined;
    });
    // Deleted files, folders and symbolic links have no stat here; empty files cannot be posted.
    if (entry !== undefined && entry.size > 0) shareable.push({ path: entry.path, size: entry.size });
  }
  const max = Math.max(0, options.max);
  const chosen = shareable.slice(0, max);
  const notShared = shareable.length - chosen.length;
  const outcome = await postInBatches({ ...options, files: chosen, pauseMs: 0 });

  const notes: string[] = [];
  if (notShared > 0) {
    notes.push(
      `…and ${notShared} more ${notShared === 1 ? 'file' : 'files'} from this turn. Write \`download\` to get every file of this thread.`,
    );
  }
  if (outcome.failed.size > 0) notes.push(describeFailures(outcome.failed));
  if (notes.length > 0) await postNote(options, notes.join('\n'));
  return { shared: outcome.posted, notShared, failed: [...outcome.failed.keys()] };
}

/** The `download` (`ダウンロード`) command: every non-internal file of the thread, sub-folders included. */
export async function runDownloadCommand(options: {
  client: WebClient;
  channel: string;
  threadTs: string;
  workspace: Workspace;
  logger: Logger;
  /** Pause between messages; tests make it short. */
  batchPauseMs?: number;
}): Promise<{ shared: string[]; failed: string[] }> {
  const entries = (await options.workspace.list()).filter((entry) => !isNoise(entry.path));
  const files = entries.filter((entry) => entry.size > 0);
  if (files.length === 0) {
    await postNote(
      options,
      entries.length === 0
        ? "There are no files in this thread yet. Attach files to a mention, or ask me to create some."
        : 'The files in this thread are all empty, so there is nothing to post.',
    );
    return { shared: [], failed: [] };
  }
  const chosen = files.slice(0, MAX_DOWNLOAD_FILES);
  const intro =
    chosen.length === 1 ? 'Here is the file of this thread:' : `Here are the ${chosen.length} files of this thread:`;
  const outcome = await postInBatches({
    ...options,
    files: chosen.map(toPost),
    pauseMs: options.batchPauseMs ?? DEFAULT_BATCH_PAUSE_MS,
    firstComment: intro,
  });

  const notes: string[] = [];
  const left = files.length - chosen.length;
  if (left > 0) notes.push(`${left} more files were not posted (at most ${MAX_DOWNLOAD_FILES} at once); ask me to zip them into one file.`);
  const empty = entries.length - files.length;
  if (empty > 0) notes.push(`${empty} empty ${empty === 1 ? 'file was' : 'files were'} left out.`);
  if (outcome.failed.size > 0) notes.push(describeFailures(outcome.failed));
  if (notes.length > 0) await postNote(options, notes.join('\n'));
  return { shared: outcome.posted, failed: [...outcome.failed.keys()] };
}

/**
 * Figures first, then other images (charts saved with savefig), then everything else; each path once,
 * internal files, caches and unsafe paths left out.
 */
function orderForSharing(figures: string[], paths: string[]): string[] {
  const seen = new Set<string>();
  const take = (list: string[]) =>
    list.flatMap((raw) => {
      let path: string;
      try {
        path = safeRelativePath(raw);
      } catch {
        return [];
      }
      if (seen.has(path) || isInternalPath(path) || isNoise(path)) return [];
      seen.add(path);
      return [path];
    });
  const figurePaths = take(figures);
  const others = take(paths);
  const isImage = (path: string) => IMAGE_PATTERN.test(path);
  return [...figurePaths, ...others.filter(isImage), ...others.filter((path) => !isImage(path))];
}

/** Files a person never wants posted: Python's byte-code caches, notebook checkpoints, half-written temporaries. */
function isNoise(path: string): boolean {
  return path.split('/').some((part) => part === '__pycache__' || part === '.ipynb_checkpoints' || part.startsWith('.partial-'));
}

function toPost(entry: FileEntry): FileToPost {
  return { path: entry.path, size: entry.size };
}

async function postInBatches(options: {
  client: WebClient;
  channel: string;
  threadTs: string;
  workspace: Workspace;
  logger: Logger;
  files: FileToPost[];
  pauseMs: number;
  firstComment?: string;
}): Promise<{ posted: string[]; failed: Map<string, string> }> {
  const posted: string[] = [];
  const failed = new Map<string, string>();
  for (let start = 0; start < options.files.length; start += FILES_PER_MESSAGE) {
    if (start > 0 && options.pauseMs > 0) await sleep(options.pauseMs);
    const outcome = await postWorkspaceFiles({
      ...options,
      files: options.files.slice(start, start + FILES_PER_MESSAGE),
      ...(start === 0 && options.firstComment !== undefined ? { initialComment: options.firstComment } : {}),
    });
    posted.push(...outcome.posted);
    for (const [path, reason] of outcome.failed) failed.set(path, reason);
  }
  options.logger.info('files posted', { posted: posted.length, failed: failed.size });
  return { posted, failed };
}

function describeFailures(failed: Map<string, string>): string {
  const list = [...failed].slice(0, 10).map(([path, reason]) => `\`${path}\` (${reason})`);
  const more = failed.size > 10 ? ` and ${failed.size - 10} more` : '';
  const retryable = [...failed.values()].some((reason) => reason !== TOO_LARGE_FOR_SLACK);
  return `:warning: I could not post ${list.join(', ')}${more}.${retryable ? ' Write `download` to try again.' : ''}`;
}

async function postNote(options: { client: WebClient; channel: string; threadTs: string; logger: Logger }, text: string) {
  await options.client.chat.postMessage({ channel: options.channel, thread_ts: options.threadTs, text }).catch((error: unknown) => {
    options.logger.warn('could not post a files note', { error: describeError(error) });
  });
}
