import { lstat, mkdir, readdir, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { checkRecordName, RECORDS_FOLDER, type RecordListing, type RecordStore, type StoredRecord } from './records.js';
import { isMissing, readHead, readVersioned, removeVersioned, writeVersioned } from './versioned-file.js';

/**
 * RecordStore in DATA_DIR: `coordination/<name>.json`, written with the exclusive claims of versioned-file.ts, so
 * several bot processes sharing the folder coordinate as instances on GCS do. A removed record stays as a
 * tombstone (its versions never repeat, so a stale writer can never match a later record) until removeOlderThan.
 */
export class LocalRecordStore implements RecordStore {
  private readonly root: string;

  constructor(dataDir: string) {
    this.root = join(dataDir, RECORDS_FOLDER);
  }

  async create(name: string, value: unknown): Promise<string | undefined> {
    const path = await this.pathFor(name, true);
    return asVersion(await writeVersioned(path, value, 'absent'));
  }

  async read<T>(name: string): Promise<StoredRecord<T> | undefined> {
    const record = await readVersioned<T>(await this.pathFor(name, false));
    return record === undefined ? undefined : { value: record.value, version: String(record.version) };
  }

  async replace(name: string, value: unknown, version: string): Promise<string | undefined> {
    return asVersion(await writeVersioned(await this.pathFor(name, false), value, Number(version)));
  }

  async remove(name: string, version: string): Promise<boolean> {
    const path = await this.pathFor(name, false);
    if (await removeVersioned(path, Number(version))) return true;
    return (await readVersioned(path).catch(() => undefined)) === undefined;
  }

  /** Removed records (tombstones) are not listed, as GCS does not list deleted objects. */
  async list(prefix: string): Promise<RecordListing[]> {
    const found: RecordListing[] = [];
    for (const path of await recordFiles(join(this.root, checkRecordName(prefix)))) {
      const info = await lstat(path).catch(() => undefined);
      const head = await readHead(path).catch(() => undefined);
      if (info !== undefined && head !== undefined && !head.deleted) found.push({ name: path.slice(this.root.length + 1, -'.json'.length), updatedMs: info.mtimeMs });
    }
    return found.sort((left, right) => (left.name < right.name ? -1 : 1));
  }

  async removeOlderThan(prefix: string, olderThanMs: number): Promise<number> {
    let removed = 0;
    for (const path of await recordFiles(join(this.root, checkRecordName(prefix)))) {
      const info = await lstat(path).catch(() => undefined);
      if (info === undefined || info.mtimeMs >= olderThanMs) continue;
      // The claims first: a claim outliving its record could be taken for a newer version of it.
      const folder = dirname(path);
      const base = path.slice(folder.length + 1);
      for (const entry of await readdir(folder)) {
        if (entry.startsWith(`${base}.`)) await unlink(join(folder, entry)).catch(() => {});
      }
      await unlink(path).catch(() => {});
      removed += 1;
    }
    return removed;
  }

  private async pathFor(name: string, create: boolean): Promise<string> {
    const path = join(this.root, `${checkRecordName(name)}.json`);
    if (create) await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    return path;
  }
}

function asVersion(version: number | undefined): string | undefined {
  return version === undefined ? undefined : String(version);
}

/** Every `<name>.json` under a folder (claims `.json.v<N>` and temporary files are not records). */
async function recordFiles(folder: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (current: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return;
      throw error;
    }
    for (const entry of entries) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && entry.name.endsWith('.json')) files.push(path);
    }
  };
  await walk(folder);
  return files;
}
