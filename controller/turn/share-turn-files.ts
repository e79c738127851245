import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { StepResult } from '../sandbox/sandbox.js';
import type { SlackThread } from '../slack/slack-thread.js';
import { isInternalPath, safeRelativePath, type Workspace } from '../workspace/workspace.js';
import { describeFailures, isNoise, postFilesInBatches, postNote } from './post-files.js';

/**
 * Files back into the thread after a turn (issue 3): TurnFiles collects what the turn's steps created or
 * changed and the figures they showed; shareTurnFiles posts them after the answer, charts first, up to
 * MAX_SHARED_FILES_PER_TURN, and says how to get the rest (`download`).
 */

const IMAGE_PATTERN = /\.(png|jpe?g|gif|svg|webp)$/i;

/** The files a turn's steps created or modified, and the figures they showed, in the order they came. */
export class TurnFiles {
  readonly paths = new Set<string>();
  readonly figures: string[] = [];

  collect(result: StepResult): void {
    for (const file of result.files) if (file.change !== 'deleted' && !isInternalPath(file.path)) this.paths.add(file.path);
    this.figures.push(...result.figures);
  }

  get isEmpty(): boolean {
    return this.paths.size === 0 && this.figures.length === 0;
  }
}

export async function shareTurnFiles(options: {
  thread: SlackThread;
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
  const shareable: Array<{ path: string; size: number }> = [];
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
  const outcome = await postFilesInBatches({ ...options, files: chosen, pauseMs: 0 });

  const notes: string[] = [];
  if (notShared > 0) {
    notes.push(
      `…and ${notShared} more ${notShared === 1 ? 'file' : 'files'} from this turn. Write \`download\` to get every file of this thread.`,
    );
  }
  if (outcome.failed.size > 0) notes.push(describeFailures(outcome.failed));
  if (notes.length > 0) await postNote(options.thread, notes.join('\n'), logger);
  return { shared: outcome.posted, notShared, failed: [...outcome.failed.keys()] };
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
