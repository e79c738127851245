import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { constants, createWriteStream } from 'node:fs';
import { lstat, mkdir, open, readdir, realpath, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseThreadPath, threadPath, type ThreadKey } from './thread-key.js';
import {
  FileNotFoundError,
  INTERNAL_DIR,
  StateConflictError,
  UnsafePathError,
  isInternalPath,
  safeExistingPath,
  safeRelativePath,
  type FileEntry,
  type Versioned,
  type Workspace,
  type WorkspaceLocation,
  type WorkspaceStore,
} from './workspace.js';
import { LocalRecordStore } from './local-records.js';
import { isMissing, readHead, readVersioned, writeVersioned } from './versioned-file.js';

/**
 * The embedded default store: `<DATA_DIR>/workspaces/<thread>/` holds the files the code sees;
 * `<DATA_DIR>/threads/<thread>/<name>.json` holds controller state (history), which the sandbox never
 * mounts. Sandboxed code can create symlinks and odd files in its workspace, so every access here
 * refuses to follow a link out of the root.
 */
export class LocalWorkspaceStore implements WorkspaceStore {
  readonly dataDir: string;
  readonly records: LocalRecordStore;

  constructor(dataDir: string) {
    this.dataDir = resolve(dataDir);
    this.records = new LocalRecordStore(this.dataDir);
  }

  open(key: ThreadKey): Workspace {
    const path = threadPath(key);
    return new LocalWorkspace(key, join(this.dataDir, 'workspaces', path), join(this.dataDir, 'threads', path));
  }

  async removeOlderThan(olderThanMs: number, options: { dryRun?: boolean } = {}): Promise<{ removedThreads: string[] }> {
    const threads = new Set([
      ...(await threadDirs(join(this.dataDir, 'workspaces'))),
      ...(await threadDirs(join(this.dataDir, 'threads'))),
    ]);
    const removedThreads: string[] = [];
    for (const path of [...threads].sort()) {
      const key = parseThreadPath(path);
      const workspace = this.open(key) as LocalWorkspace;
      const newest = Math.max(await newestMtime(workspace.root), await newestMtime(workspace.stateDir));
      if (newest < olderThanMs) {
        if (!options.dryRun) {
          await rm(workspace.root, { recursive: true, force: true });
          await rm(workspace.stateDir, { recursive: true, force: true });
        }
        removedThreads.push(path);
      }
    }
    return { removedThreads };
  }
}

export class LocalWorkspace implements Workspace {
  readonly location: WorkspaceLocation;

  constructor(
    readonly key: ThreadKey,
    readonly root: string,
    readonly stateDir: string,
  ) {
    this.location = { kind: 'local', dir: root };
  }

  async list(options: { includeInternal?: boolean } = {}): Promise<FileEntry[]> {
    const entries: FileEntry[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      let children;
      try {
        children = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if (isMissing(error)) return;
        throw error;
      }
      for (const child of children) {
        const path = prefix === '' ? child.name : `${prefix}/${child.name}`;
        if (!options.includeInternal && isInternalPath(path)) continue;
        // Dirent types come from lstat semantics: a symlink is neither a file nor a directory here.
        if (child.isDirectory()) await walk(join(dir, child.name), path);
        else if (child.isFile()) {
          const info = await lstat(join(dir, child.name)).catch(() => undefined);
          if (info?.isFile()) entries.push({ path, size: info.size, modifiedMs: info.mtimeMs });
        }
      }
    };
    if (await this.rootIsDirectory()) await walk(this.root, '');
    return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  async stat(path: string): Promise<FileEntry | undefined> {
    const relative = safeExistingPath(path);
    const full = await this.resolveInside(relative, false).catch((error: unknown) => {
      if (error instanceof FileNotFoundError) return undefined;
      throw error;
    });
    if (full === undefined) return undefined;
    const info = await lstat(full).catch(() => undefined);
    if (!info?.isFile()) return undefined;
    return { path: relative, size: info.size, modifiedMs: info.mtimeMs };
  }

  async read(path: string): Promise<Readable> {
    const relative = safeExistingPath(path);
    const full = await this.resolveInside(relative, false);
    // O_NOFOLLOW: if the last component was swapped for a symlink after the check, open fails.
    const handle = await open(full, constants.O_RDONLY | constants.O_NOFOLLOW).catch((error: unknown) => {
      if (isMissing(error) || isLinkLoop(error)) throw new FileNotFoundError(`no such file: ${relative}`, { cause: error });
      throw error;
    });
    const info = await handle.stat();
    if (!info.isFile()) {
      await handle.close();
      throw new FileNotFoundError(`not a regular file: ${relative}`);
    }
    return handle.createReadStream({ autoClose: true });
  }

  async write(path: string, data: Readable | Buffer | string): Promise<FileEntry> {
    const relative = safeRelativePath(path);
    const full = await this.resolveInside(relative, true);
    const temporary = join(dirname(full), `.partial-${randomUUID()}`);
    const sink = createWriteStream(temporary, { flags: 'wx', mode: 0o666 });
    try {
      const source = typeof data === 'string' || Buffer.isBuffer(data) ? Readable.from([data]) : data;
      await pipeline(source, sink);
      await this.checkNotSymlink(full);
      await rename(temporary, full);
    } catch (error) {
      // A source can fail before the sink has even opened its file; pipeline does not wait for
      // that open, so wait for the sink to close first, or the file would appear after the unlink.
      if (!sink.closed) await once(sink, 'close').catch(() => {});
      await unlink(temporary).catch(() => {});
      throw error;
    }
    const info = await stat(full);
    return { path: relative, size: info.size, modifiedMs: info.mtimeMs };
  }

  async delete(path: string): Promise<void> {
    const relative = safeRelativePath(path);
    const full = await this.resolveInside(relative, false).catch((error: unknown) => {
      if (error instanceof FileNotFoundError) return undefined;
      throw error;
    });
    if (full !== undefined) await rm(full, { force: true });
  }

  async readState<T>(name: string): Promise<Versioned<T> | undefined> {
    const record = await readVersioned<T>(this.statePath(name));
    return record === undefined ? undefined : { value: record.value, version: String(record.version) };
  }

  /** Compare-and-swap that holds across processes sharing DATA_DIR (versioned-file.ts). */
  async writeState(name: string, value: unknown, expectedVersion: string | null): Promise<string> {
    const target = this.statePath(name);
    // Readable by the controller only (issue 14): folders 0700, files 0600 (versioned-file.ts), whatever the umask.
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    const version = await writeVersioned(target, value, expectedVersion === null ? 'absent' : Number(expectedVersion));
    if (version === undefined) {
      const found = (await readHead(target))?.version ?? null;
      throw new StateConflictError(`state ${name} of ${threadPath(this.key)} changed (expected ${expectedVersion}, found ${found})`);
    }
    return String(version);
  }

  private statePath(name: string): string {
    if (!/^[a-z][a-z0-9-]{0,63}$/.test(name)) throw new UnsafePathError(`invalid state name: ${name}`);
    return join(this.stateDir, `${name}.json`);
  }

  private async rootIsDirectory(): Promise<boolean> {
    const info = await lstat(this.root).catch(() => undefined);
    return info?.isDirectory() ?? false;
  }

  /**
   * The absolute path of `relative`, after checking that no directory on the way is a symlink that
   * leads out of the root (the sandbox can plant `ln -s / escape`). With `create`, missing parent
   * folders are made first.
   */
  private async resolveInside(relative: string, create: boolean): Promise<string> {
    const full = join(this.root, relative);
    const parent = dirname(full);
    if (create) await mkdir(parent, { recursive: true });
    const realRoot = await realpath(this.root).catch((error: unknown) => {
      if (isMissing(error)) throw new FileNotFoundError(`no such file: ${relative}`, { cause: error });
      throw error;
    });
    const realParent = await realpath(parent).catch((error: unknown) => {
      if (isMissing(error)) throw new FileNotFoundError(`no such file: ${relative}`, { cause: error });
      throw error;
    });
    const rootInfo = await lstat(this.root);
    if (rootInfo.isSymbolicLink() || (realParent !== realRoot && !realParent.startsWith(realRoot + sep))) {
      throw new UnsafePathError(`path leaves the workspace: ${relative}`);
    }
    if (relative === INTERNAL_DIR) throw new UnsafePathError('the internal folder is not a file');
    return join(realParent, full.slice(parent.length + 1));
  }

  private async checkNotSymlink(full: string): Promise<void> {
    const info = await lstat(full).catch(() => undefined);
    if (info?.isSymbolicLink() || info?.isDirectory()) {
      throw new UnsafePathError(`refusing to replace a ${info.isDirectory() ? 'folder' : 'symbolic link'}: ${full}`);
    }
  }
}

async function threadDirs(base: string): Promise<string[]> {
  const found: string[] = [];
  const level = async (dir: string, parts: string[]): Promise<void> => {
    const children = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const child of children) {
      if (!child.isDirectory()) continue;
      const next = [...parts, child.name];
      if (next.length === 3) found.push(next.join('/'));
      else await level(join(dir, child.name), next);
    }
  };
  await level(base, []);
  return found;
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  const walk = async (current: string): Promise<void> => {
    const children = await readdir(current, { withFileTypes: true }).catch(() => []);
    for (const child of children) {
      const path = join(current, child.name);
      const info = await lstat(path).catch(() => undefined);
      if (info === undefined) continue;
      newest = Math.max(newest, info.mtimeMs);
      if (child.isDirectory()) await walk(path);
    }
  };
  await walk(dir);
  return newest;
}

function isLinkLoop(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ELOOP';
}
