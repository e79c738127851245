import { randomUUID } from 'node:crypto';
import { link, lstat, open, readFile, rename, stat, unlink } from 'node:fs/promises';

/**
 * A small JSON record in one local file, written with compare-and-swap that holds across processes sharing the
 * folder (two bots on one DATA_DIR). The file is `{"version":N,"value":...}` (or `{"version":N,"deleted":true}`
 * once removed), so readers see the old or the new record whole.
 *
 * Why by hand: POSIX has no conditional rename, and a lock file left by a killed process needs timing guesses to
 * break. Exclusive creation is the one atomic test-and-set a file system gives, so each version is claimed by
 * creating `<file>.v<N>` with link(2), which fails when the name exists: only one writer can produce version N,
 * and only after reading version N-1. The claim is a hard link of the complete new file, then it is renamed over
 * `<file>`. A writer killed between the two leaves a claim that the next writer finds (EEXIST) and publishes for
 * it ("roll forward"), so nothing stays stuck. Superseded claims are emptied (an empty file still blocks its
 * name, and holds no old copy on disk) and pruned once far behind.
 */

const DELETED = Symbol('deleted');
/** Claims this far behind the current version are removed; a writer stalled across that many writes is unheard of. */
const KEEP_CLAIMS = 64;

export interface FileHead {
  version: number;
  deleted: boolean;
}

/** The version at the head of the file (it is written first), without parsing the whole record. */
export async function readHead(path: string): Promise<FileHead | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  try {
    const head = Buffer.alloc(64);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const match = /^\{"version":(\d+),("deleted":true)?/.exec(head.subarray(0, bytesRead).toString('utf8'));
    if (match === null) throw new Error(`${path} is not a versioned record`);
    return { version: Number(match[1]), deleted: match[2] !== undefined };
  } finally {
    await handle.close();
  }
}

/** The record and its version; undefined when there is none (or it was removed). */
export async function readVersioned<T>(path: string): Promise<{ value: T; version: number } | undefined> {
  let text;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  const parsed = JSON.parse(text) as { version: number; value?: T; deleted?: true };
  return parsed.deleted === true ? undefined : { value: parsed.value as T, version: parsed.version };
}

/**
 * Writes `value` if the record is still at `expected` ('absent': there is none, or it was removed). Resolves with
 * the new version, or undefined when another writer got there first.
 */
export function writeVersioned(path: string, value: unknown, expected: number | 'absent'): Promise<number | undefined> {
  return write(path, { value }, expected);
}

/** Removes the record if it is still at `expected` (it stays as a `deleted` tombstone, so versions never repeat). */
export async function removeVersioned(path: string, expected: number): Promise<boolean> {
  return (await write(path, DELETED, expected)) !== undefined;
}

async function write(path: string, content: { value: unknown } | typeof DELETED, expected: number | 'absent'): Promise<number | undefined> {
  const head = await readHead(path);
  const holds = expected === 'absent' ? head === undefined || head.deleted : head !== undefined && !head.deleted && head.version === expected;
  if (!holds) return undefined;
  // A new record starts at the clock, not at 1: claims left by an earlier record of the same name never match.
  const version = head === undefined ? Date.now() : head.version + 1;
  const body = content === DELETED ? { version, deleted: true } : { version, value: content.value };
  const temporary = await writeTemporary(path, JSON.stringify(body));
  try {
    if (head === undefined) {
      // No file yet: publishing it is itself the exclusive step.
      return (await linkExclusive(temporary, path)) ? version : undefined;
    }
    if (!(await linkExclusive(temporary, claimOf(path, version)))) {
      await rollForward(path, version);
      return undefined;
    }
    await rename(temporary, path);
    await supersede(path, version);
    return version;
  } finally {
    await unlink(temporary).catch(() => {});
  }
}

/**
 * A claim exists for a version the file does not show: its writer died (or stalls) between claiming and
 * renaming. Publish the newest claim for it; a late rename by a stalled writer is repaired the same way.
 */
async function rollForward(path: string, from: number): Promise<void> {
  let newest = from;
  while (await exists(claimOf(path, newest + 1))) newest += 1;
  const head = await readHead(path);
  if (head !== undefined && head.version >= newest) return;
  const temporary = `${path}.${randomUUID()}.tmp`;
  try {
    await link(claimOf(path, newest), temporary);
  } catch (error) {
    if (isMissing(error)) return; // superseded meanwhile: someone published a newer version
    throw error;
  }
  try {
    // An emptied claim: a newer version is out already.
    if ((await stat(temporary)).size > 0) await rename(temporary, path);
  } finally {
    // rename(2) does nothing when both names are links of one file (the claimer published meanwhile): the
    // temporary name would stay.
    await unlink(temporary).catch(() => {});
  }
}

/** The claim of the previous version becomes an empty marker; claims far behind go. */
async function supersede(path: string, version: number): Promise<void> {
  const empty = `${path}.${randomUUID()}.tmp`;
  await (await open(empty, 'wx', 0o600)).close();
  await rename(empty, claimOf(path, version - 1)).catch(() => unlink(empty).catch(() => {}));
  await unlink(claimOf(path, version - KEEP_CLAIMS)).catch(() => {});
}

async function writeTemporary(path: string, text: string): Promise<string> {
  const temporary = `${path}.${randomUUID()}.tmp`;
  // Write and fsync before publishing: after a crash a reader sees the old record or the new one, never half.
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return temporary;
}

async function linkExclusive(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

function claimOf(path: string, version: number): string {
  return `${path}.v${version}`;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    (error: unknown) => {
      if (isMissing(error)) return false;
      throw error;
    },
  );
}

export function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
