import { lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { FakeGcs } from './fake-gcs.js';

/**
 * What gcsfuse does for the Cloud Run fake, on FakeGcs's in-memory objects: `mountPrefix` copies
 * the objects under a prefix into a directory (like `--only-dir PREFIX --implicit-dirs`), and
 * `syncBack` writes back what the runner changed: new or modified files become objects, removed
 * files are deleted, new empty directories become `dir/` placeholder objects and symlinks become
 * empty objects with `gcsfuse_symlink_target` metadata, as gcsfuse stores them.
 */

export interface MountSnapshot {
  /** Relative path -> bytes as mounted. */
  files: Map<string, Buffer>;
  directories: Set<string>;
}

export async function mountPrefix(gcs: FakeGcs, bucket: string, prefix: string, dir: string): Promise<MountSnapshot> {
  const snapshot: MountSnapshot = { files: new Map(), directories: new Set() };
  for (const name of gcs.names(bucket, prefix)) {
    const relative = name.slice(prefix.length);
    const object = gcs.bucket(bucket).get(name)!;
    if (relative === '') continue;
    if (relative.endsWith('/')) {
      await mkdir(join(dir, relative), { recursive: true });
      snapshot.directories.add(relative.slice(0, -1));
      continue;
    }
    await mkdir(dirname(join(dir, relative)), { recursive: true });
    const target = object.metadata?.gcsfuse_symlink_target;
    if (target !== undefined) {
      await symlink(target, join(dir, relative));
      continue;
    }
    await writeFile(join(dir, relative), object.data);
    snapshot.files.set(relative, object.data);
  }
  for (const relative of snapshot.files.keys()) {
    for (let parent = dirname(relative); parent !== '.'; parent = dirname(parent)) snapshot.directories.add(parent);
  }
  return snapshot;
}

export async function syncBack(gcs: FakeGcs, bucket: string, prefix: string, dir: string, snapshot: MountSnapshot): Promise<void> {
  const seen = new Set<string>();
  const walk = async (current: string, relativeDir: string): Promise<void> => {
    for (const child of await readdir(current, { withFileTypes: true })) {
      const relative = relativeDir === '' ? child.name : `${relativeDir}/${child.name}`;
      const full = join(current, child.name);
      const info = await lstat(full);
      if (info.isSymbolicLink()) {
        gcs.put(bucket, prefix + relative, Buffer.alloc(0), { metadata: { gcsfuse_symlink_target: await readlink(full) } });
      } else if (info.isDirectory()) {
        if (!snapshot.directories.has(relative)) gcs.put(bucket, `${prefix}${relative}/`, Buffer.alloc(0));
        await walk(full, relative);
      } else if (info.isFile()) {
        seen.add(relative);
        const data = await readFile(full);
        const before = snapshot.files.get(relative);
        if (before === undefined || !before.equals(data)) gcs.put(bucket, prefix + relative, data);
      }
    }
  };
  await walk(dir, '');
  for (const relative of snapshot.files.keys()) {
    if (!seen.has(relative)) gcs.bucket(bucket).delete(prefix + relative);
  }
}
