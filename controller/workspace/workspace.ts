import type { Readable } from 'node:stream';
import { AppError } from '../errors.js';
import type { RecordStore } from './records.js';
import type { ThreadKey } from './thread-key.js';

/**
 * The Workspace seam (docs/architecture.md, Seams): one thread's files (what its code sees as /workspace) plus the
 * thread's controller state (history, usage), which lives outside the sandbox's reach.
 * Two implementations: LocalWorkspace (a directory tree) and GcsWorkspace (one prefix per thread).
 */

/** Folder inside the workspace for runner bookkeeping (step requests/results, saved Python state). Never shared. */
export const INTERNAL_DIR = '.oi';

export interface FileEntry {
  /** Relative POSIX path inside the workspace, e.g. `charts/sales.png`. Never starts with `/` or contains `..`. */
  path: string;
  size: number;
  modifiedMs: number;
}

/** Where the files physically are; a sandbox uses it to reach them. */
export type WorkspaceLocation =
  | { kind: 'local'; dir: string }
  | { kind: 'gcs'; bucket: string; prefix: string };

export interface Versioned<T> {
  value: T;
  /** Opaque version token (GCS generation, or a local counter); pass back to writeState. */
  version: string;
}

export interface Workspace {
  readonly key: ThreadKey;
  readonly location: WorkspaceLocation;

  /**
   * Regular files under the root, recursively, sorted by path. Symbolic links are never followed and
   * never listed. Internal files (`.oi/`) are left out unless `includeInternal` is set.
   */
  list(options?: { includeInternal?: boolean }): Promise<FileEntry[]>;
  /** Metadata of one regular file, or undefined when absent (or a symlink / not a regular file). */
  stat(path: string): Promise<FileEntry | undefined>;
  /** A stream of a regular file's bytes. Refuses symlinks and paths that leave the root. */
  read(path: string): Promise<Readable>;
  /**
   * Writes a file atomically: readers see the old file or the whole new one, never half of it; a
   * failed or aborted write leaves nothing behind. `data` is streamed, never buffered whole.
   */
  write(path: string, data: Readable | Buffer | string): Promise<FileEntry>;
  delete(path: string): Promise<void>;

  /** Controller state (e.g. `messages`, `usage`), stored outside the workspace files. */
  readState<T>(name: string): Promise<Versioned<T> | undefined>;
  /**
   * Writes state if its current version is still `expectedVersion` (null: must not exist yet).
   * Throws StateConflictError otherwise. Crash-safe: a reader sees the old or the new value whole.
   */
  writeState(name: string, value: unknown, expectedVersion: string | null): Promise<string>;
}

export interface WorkspaceStore {
  open(key: ThreadKey): Workspace;
  /** Records shared by every controller instance on this store (de-duplication, leases): records.ts. */
  readonly records: RecordStore;
  /**
   * Removes workspaces and histories whose newest file is older than `olderThanMs` (epoch ms).
   * With `dryRun`, removes nothing and returns the threads that would be removed.
   */
  removeOlderThan(olderThanMs: number, options?: { dryRun?: boolean }): Promise<{ removedThreads: string[] }>;
}

export class UnsafePathError extends AppError {
  readonly code = 'unsafe_path';
}

export class FileNotFoundError extends AppError {
  readonly code = 'file_not_found';
}

export class StateConflictError extends AppError {
  readonly code = 'state_conflict';
}

/**
 * Normalises a user- or code-supplied relative path, or throws UnsafePathError: no absolute paths,
 * no `..`, no empty segments, no control characters, no backslashes.
 */
export function safeRelativePath(path: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused here
  if (path.length > 1024 || /[\u0000-\u001f\u007f\\]/.test(path)) throw unsafe(path);
  return insideRoot(path);
}

/**
 * Like safeRelativePath, for reading a file that already exists: its name may hold any character Linux allows
 * but NUL (Python code can write `report\n.csv`), and the path may be as long as PATH_MAX. Still never
 * absolute, never `..`, never a backslash (the one separator rule every backend shares), so it cannot leave the
 * root; the backends refuse symbolic links on top. Used by `read` and `stat`, so `download` sends every file.
 */
export function safeExistingPath(path: string): string {
  if (path.length > 4096 || path.includes('\u0000') || path.includes('\\')) throw unsafe(path);
  return insideRoot(path);
}

/** The path's segments joined again, or UnsafePathError when it is empty, absolute or climbs out with `..`. */
function insideRoot(path: string): string {
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  if (path.startsWith('/') || parts.length === 0 || parts.some((part) => part === '..')) throw unsafe(path);
  return parts.join('/');
}

function unsafe(path: string): UnsafePathError {
  return new UnsafePathError(`unsafe path: ${JSON.stringify(path)}`);
}

export function isInternalPath(path: string): boolean {
  return path === INTERNAL_DIR || path.startsWith(`${INTERNAL_DIR}/`);
}
