import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Bucket, File, FileMetadata, Storage } from '@google-cloud/storage';
import type { Logger } from '../logger.js';
import { GcsRecordStore } from './gcs-records.js';
import { threadPath, type ThreadKey } from './thread-key.js';
import {
  FileNotFoundError,
  isInternalPath,
  safeExistingPath,
  safeRelativePath,
  StateConflictError,
  UnsafePathError,
  type FileEntry,
  type Versioned,
  type Workspace,
  type WorkspaceLocation,
  type WorkspaceStore,
} from './workspace.js';

/**
 * GcsWorkspace (docs/architecture.md, Storage layout): one bucket, one prefix per thread.
 *   workspaces/<team>/<channel>/<ts>/<path>   the thread's files (the sandbox mounts this prefix)
 *   threads/<team>/<channel>/<ts>/<name>.json controller state, out of the sandbox token's reach
 * State writes use generation preconditions so two controller instances never lose an update.
 * Objects whose names end in `/` are directory placeholders (gcsfuse creates them on mkdir) and
 * objects carrying `gcsfuse_symlink_target` are gcsfuse's symlinks: neither is a file.
 */

const WORKSPACES = 'workspaces/';
const THREADS = 'threads/';
/** gcsfuse stores a symlink as an empty object with this user metadata key. */
const SYMLINK_METADATA_KEY = 'gcsfuse_symlink_target';
const DEFAULT_UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024;
/** Same rule as LocalWorkspace: state names are short lowercase words (`messages`, `usage`). */
const statePattern = /^[a-z][a-z0-9-]{0,63}$/;

export interface GcsWorkspaceStoreOptions {
  storage: Storage;
  bucket: string;
  logger: Logger;
  /**
   * Streams up to this size go up in one request; longer ones in a resumable upload in chunks of
   * this size (a multiple of 256 KiB). A chunked upload is finalized only by its last chunk, so a
   * stream that fails midway never becomes an object.
   */
  uploadChunkBytes?: number;
}

export class GcsWorkspaceStore implements WorkspaceStore {
  readonly records: GcsRecordStore;
  private readonly bucket: Bucket;
  private readonly chunkBytes: number;

  constructor(private readonly options: GcsWorkspaceStoreOptions) {
    this.bucket = options.storage.bucket(options.bucket);
    this.records = new GcsRecordStore(this.bucket);
    this.chunkBytes = options.uploadChunkBytes ?? DEFAULT_UPLOAD_CHUNK_BYTES;
    if (this.chunkBytes <= 0 || this.chunkBytes % (256 * 1024) !== 0) {
      throw new RangeError('uploadChunkBytes must be a positive multiple of 256 KiB');
    }
  }

  open(key: ThreadKey): Workspace {
    return new GcsWorkspace(key, this.bucket, this.chunkBytes, this.options.logger);
  }

  async removeOlderThan(olderThanMs: number, options: { dryRun?: boolean } = {}): Promise<{ removedThreads: string[] }> {
    const objects = new Map<string, File[]>();
    const newest = new Map<string, number>();
    for (const top of [WORKSPACES, THREADS]) {
      const [files] = await this.bucket.getFiles({ prefix: top, autoPaginate: true });
      for (const file of files) {
        const thread = file.name.slice(top.length).split('/').slice(0, 3);
        if (thread.length < 3) continue;
        const path = thread.join('/');
        const list = objects.get(path) ?? [];
        list.push(file);
        objects.set(path, list);
        newest.set(path, Math.max(newest.get(path) ?? 0, updatedMs(file.metadata)));
      }
    }
    const removedThreads = [...newest].filter(([, ms]) => ms < olderThanMs).map(([path]) => path).sort();
    if (options.dryRun) return { removedThreads };
    for (const path of removedThreads) {
      // Delete only the generation that was listed: an object rewritten meanwhile stays.
      await forEachLimited(objects.get(path) ?? [], 16, async (file) => {
        try {
          await file.delete({ ignoreNotFound: true, ifGenerationMatch: file.metadata.generation });
        } catch (error) {
          if (statusOf(error) !== 412) throw error;
        }
      });
      this.options.logger.info('retention removed thread', { thread: path });
    }
    return { removedThreads };
  }
}

class GcsWorkspace implements Workspace {
  readonly location: WorkspaceLocation;
  private readonly filesPrefix: string;
  private readonly statePrefix: string;

  constructor(
    readonly key: ThreadKey,
    private readonly bucket: Bucket,
    private readonly chunkBytes: number,
    private readonly logger: Logger,
  ) {
    const path = threadPath(key);
    this.filesPrefix = `${WORKSPACES}${path}/`;
    this.statePrefix = `${THREADS}${path}/`;
    this.location = { kind: 'gcs', bucket: bucket.name, prefix: this.filesPrefix };
  }

  async list(options: { includeInternal?: boolean } = {}): Promise<FileEntry[]> {
    const [files] = await this.bucket.getFiles({ prefix: this.filesPrefix, autoPaginate: true });
    const entries: FileEntry[] = [];
    for (const file of files) {
      const path = file.name.slice(this.filesPrefix.length);
      if (!isRegularFile(file.metadata) || !isCleanPath(path)) continue;
      if (!options.includeInternal && isInternalPath(path)) continue;
      entries.push(toEntry(path, file.metadata));
    }
    return entries.sort((left, right) => (left.path < right.path ? -1 : left.path > right.path ? 1 : 0));
  }

  async stat(path: string): Promise<FileEntry | undefined> {
    const relative = safeExistingPath(path);
    const metadata = await this.metadataOrUndefined(this.file(relative));
    return metadata === undefined || !isRegularFile(metadata) ? undefined : toEntry(relative, metadata);
  }

  async read(path: string): Promise<Readable> {
    const relative = safeExistingPath(path);
    const metadata = await this.metadataOrUndefined(this.file(relative));
    if (metadata === undefined || !isRegularFile(metadata)) throw new FileNotFoundError(`no such file: ${relative}`);
    // Pinned to the generation just seen, so a concurrent rewrite cannot mix two versions.
    return this.bucket.file(this.filesPrefix + relative, { generation: Number(metadata.generation) }).createReadStream({ validation: 'crc32c' });
  }

  async write(path: string, data: Readable | Buffer | string): Promise<FileEntry> {
    const relative = safeRelativePath(path);
    const file = this.file(relative);
    if (typeof data === 'string' || Buffer.isBuffer(data)) {
      await file.save(data, { resumable: false, validation: 'crc32c' });
    } else {
      await this.writeStream(file, data);
    }
    this.logger.debug('workspace file written', { size: Number(file.metadata.size) });
    return toEntry(relative, file.metadata);
  }

  async delete(path: string): Promise<void> {
    await this.file(safeRelativePath(path)).delete({ ignoreNotFound: true });
  }

  async readState<T>(name: string): Promise<Versioned<T> | undefined> {
    const object = this.bucket.file(this.stateName(name));
    // Metadata then the bytes of exactly that generation; if it was replaced in between, look again.
    for (let attempt = 0; attempt < 5; attempt++) {
      const metadata = await this.metadataOrUndefined(object);
      if (metadata === undefined) return undefined;
      const version = String(metadata.generation);
      try {
        const [bytes] = await this.bucket.file(object.name, { generation: Number(version) }).download({ validation: 'crc32c' });
        return { value: JSON.parse(bytes.toString('utf8')) as T, version };
      } catch (error) {
        if (statusOf(error) !== 404) throw error;
      }
    }
    throw new StateConflictError(`state ${name} kept changing while being read`);
  }

  async writeState(name: string, value: unknown, expectedVersion: string | null): Promise<string> {
    const object = this.bucket.file(this.stateName(name));
    if (expectedVersion !== null && !/^[1-9]\d*$/.test(expectedVersion)) {
      throw new StateConflictError(`state ${name}: ${JSON.stringify(expectedVersion)} is not a GCS generation`);
    }
    try {
      await object.save(JSON.stringify(value), {
        resumable: false,
        contentType: 'application/json',
        validation: 'crc32c',
        preconditionOpts: { ifGenerationMatch: expectedVersion ?? 0 },
      });
    } catch (error) {
      if (statusOf(error) === 412) {
        throw new StateConflictError(`state ${name} was changed by another writer`, { cause: error });
      }
      throw error;
    }
    return String(object.metadata.generation);
  }

  private file(relative: string): File {
    return this.bucket.file(this.filesPrefix + relative);
  }

  private stateName(name: string): string {
    if (!statePattern.test(name)) throw new UnsafePathError(`invalid state name: ${JSON.stringify(name)}`);
    return `${this.statePrefix}${name}.json`;
  }

  private async metadataOrUndefined(file: File): Promise<FileMetadata | undefined> {
    try {
      const [metadata] = await file.getMetadata();
      return metadata;
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw error;
    }
  }

  /**
   * Up to one chunk is read first: a short stream goes up in one request; a longer one in a chunked
   * resumable upload that only the final chunk finalizes. If the source fails, pipeline destroys the
   * upload stream before that chunk is sent, so no object (and no half file) appears.
   */
  private async writeStream(file: File, source: Readable): Promise<void> {
    const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
    const head: Buffer[] = [];
    let headBytes = 0;
    let ended = false;
    while (headBytes <= this.chunkBytes) {
      const next = await iterator.next();
      if (next.done === true) {
        ended = true;
        break;
      }
      const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
      head.push(chunk);
      headBytes += chunk.length;
    }
    if (ended) {
      await file.save(Buffer.concat(head), { resumable: false, validation: 'crc32c' });
      return;
    }
    async function* rest(): AsyncGenerator<Buffer | string> {
      yield* head;
      for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) yield next.value;
    }
    await pipeline(Readable.from(rest()), file.createWriteStream({ resumable: true, chunkSize: this.chunkBytes, validation: 'crc32c' }));
  }
}

function isRegularFile(metadata: FileMetadata): boolean {
  return !(metadata.name ?? '').endsWith('/') && metadata.metadata?.[SYMLINK_METADATA_KEY] === undefined;
}

/** Names that could not be read back (safeExistingPath) are skipped, not listed: odd but readable ones are listed. */
function isCleanPath(path: string): boolean {
  try {
    return safeExistingPath(path) === path;
  } catch {
    return false;
  }
}

function toEntry(path: string, metadata: FileMetadata): FileEntry {
  return { path, size: Number(metadata.size ?? 0), modifiedMs: updatedMs(metadata) };
}

function updatedMs(metadata: FileMetadata): number {
  return Date.parse(String(metadata.updated ?? metadata.timeCreated ?? 0));
}

function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

async function forEachLimited<T>(items: T[], limit: number, action: (item: T) => Promise<void>): Promise<void> {
  let index = 0;
  const worker = async () => {
    while (index < items.length) await action(items[index++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
