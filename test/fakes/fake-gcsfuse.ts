import { lchown, lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { FakeGcs } from './fake-gcs.js';

/**
 * What gcsfuse does for the Cloud Run fake, on FakeGcs's in-memory objects: a directory that mirrors the
 * objects under a prefix (like `--only-dir PREFIX --implicit-dirs`), brought in step with GCS at the moments
 * the real mount would be:
 * - `refresh()` (GCS → directory): objects written or deleted in GCS since the last sync appear or vanish, as
 *   a mount with its metadata caches off shows them at the next lookup (a session's mount, entrypoint.sh);
 * - `flush()` (directory → GCS): files the code wrote become objects, removed files are deleted, new empty
 *   directories become `dir/` placeholder objects and symlinks empty objects with `gcsfuse_symlink_target`
 *   metadata, as gcsfuse stores them. gcsfuse writes a file when it is closed; the fake copies what is on disk
 *   (what Python still buffers is not there, which is what runner_open_files.py is for).
 * A one-shot step refreshes once before the runner and flushes once after it (the unmount); a session
 * refreshes when its relay takes a request and flushes before a result is stored (fake-job-container.ts).
 * Files the code changed since the last sync win over a concurrent change in GCS, as the last close does.
 */

interface Synced {
  generation: number;
  data: Buffer;
}

export class LiveMount {
  /** Relative path -> the object's generation and bytes as last synced. */
  private readonly files = new Map<string, Synced>();
  private readonly directories = new Set<string>();
  private readonly symlinks = new Set<string>();

  constructor(
    private readonly gcs: FakeGcs,
    private readonly bucket: string,
    private readonly prefix: string,
    readonly dir: string,
    private readonly options: {
      /** Relative paths the mount view leaves out (a session's mailbox objects, which the relay reads and writes). */
      exclude?: RegExp;
      /** The uid and gid the files belong to (the runner's user when the fake runs as root). */
      owner?: { uid: number; gid: number };
    } = {},
  ) {}

  async refresh(): Promise<void> {
    await this.own(this.dir);
    const seen = new Set<string>();
    for (const name of this.gcs.names(this.bucket, this.prefix)) {
      const relative = name.slice(this.prefix.length);
      if (relative === '' || this.excluded(relative)) continue;
      const object = this.gcs.bucket(this.bucket).get(name)!;
      if (relative.endsWith('/')) {
        await this.makeDirectory(relative.slice(0, -1));
        this.directories.add(relative.slice(0, -1));
        continue;
      }
      seen.add(relative);
      const target = object.metadata?.gcsfuse_symlink_target;
      if (target !== undefined) {
        if (!this.symlinks.has(relative)) {
          await this.makeDirectory(dirname(relative));
          await symlink(target, join(this.dir, relative)).catch(() => {});
          this.symlinks.add(relative);
        }
        continue;
      }
      if (this.files.get(relative)?.generation === object.generation) continue;
      await this.makeDirectory(dirname(relative));
      await writeFile(join(this.dir, relative), object.data);
      await this.own(join(this.dir, relative));
      this.files.set(relative, { generation: object.generation, data: object.data });
    }
    for (const relative of [...this.files.keys()]) {
      if (seen.has(relative)) continue;
      // Deleted in GCS: gone from the mount too, unless the code changed the file since the last sync.
      const local = await readFile(join(this.dir, relative)).catch(() => undefined);
      if (local === undefined || local.equals(this.files.get(relative)!.data)) await rm(join(this.dir, relative), { force: true });
      this.files.delete(relative);
    }
  }

  async flush(): Promise<void> {
    const seen = new Set<string>();
    await this.walk(this.dir, '', seen);
    for (const [relative, synced] of [...this.files]) {
      if (seen.has(relative)) continue;
      const object = this.gcs.bucket(this.bucket).get(this.prefix + relative);
      // Only the generation the mount knew: an object someone else wrote meanwhile stays.
      if (object?.generation === synced.generation) this.gcs.bucket(this.bucket).delete(this.prefix + relative);
      this.files.delete(relative);
    }
  }

  private async walk(current: string, relativeDir: string, seen: Set<string>): Promise<void> {
    for (const child of await readdir(current, { withFileTypes: true }).catch(() => [])) {
      const relative = relativeDir === '' ? child.name : `${relativeDir}/${child.name}`;
      if (this.excluded(relative)) continue;
      const full = join(current, child.name);
      const info = await lstat(full).catch(() => undefined);
      if (info === undefined) continue;
      if (info.isSymbolicLink()) {
        if (!this.symlinks.has(relative)) {
          this.gcs.put(this.bucket, this.prefix + relative, Buffer.alloc(0), { metadata: { gcsfuse_symlink_target: await readlink(full) } });
          this.symlinks.add(relative);
        }
      } else if (info.isDirectory()) {
        if (!this.directories.has(relative)) {
          this.gcs.put(this.bucket, `${this.prefix}${relative}/`, Buffer.alloc(0));
          this.directories.add(relative);
        }
        await this.walk(full, relative, seen);
      } else if (info.isFile()) {
        seen.add(relative);
        const data = await readFile(full);
        if (this.files.get(relative)?.data.equals(data)) continue;
        const object = this.gcs.put(this.bucket, this.prefix + relative, data);
        this.files.set(relative, { generation: object.generation, data });
      }
    }
  }

  /** A file written through the mount (by the entrypoint, as root), owned like the mount's files. */
  async writeFile(relative: string, data: string): Promise<void> {
    await this.makeDirectory(dirname(relative));
    await writeFile(join(this.dir, relative), data);
    await this.own(join(this.dir, relative));
  }

  private excluded(relative: string): boolean {
    return this.options.exclude?.test(relative) ?? false;
  }

  /** mkdir -p inside the mount, each new folder owned like the files (the root included). */
  private async makeDirectory(relative: string): Promise<void> {
    const parts = relative === '.' || relative === '' ? [] : relative.split('/');
    for (let depth = 1; depth <= parts.length; depth++) {
      const path = join(this.dir, ...parts.slice(0, depth));
      const created = await mkdir(path).then(() => true, () => false);
      if (created) await this.own(path);
      this.directories.add(parts.slice(0, depth).join('/'));
    }
  }

  private async own(path: string): Promise<void> {
    if (this.options.owner !== undefined) await lchown(path, this.options.owner.uid, this.options.owner.gid);
  }
}
