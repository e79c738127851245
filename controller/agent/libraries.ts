import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * The libraries the sandbox can import, with their versions, so the system prompt promises nothing that is not
 * there. Both sandboxes answer with sandbox-image/record_libraries.py, which imports each library of
 * sandbox-image/requirements.txt and keeps those that import:
 * - Cloud Run: the image ran it at build time (/opt/oi/libraries.json), and the controller's build copies that file
 *   to sandbox-image/libraries.json (docs/deploy.md, step 5); read here. Without it (a checkout, a build that skipped
 *   the copy) only the libraries every image has are named: the image's build fails without them.
 * - Local: run at start-up with the local sandbox's Python. Importing everything takes seconds, so the answer is
 *   kept per interpreter in a cache file, valid while the interpreter, the list, the script and the folders on
 *   Python's sys.path (their modification times change when a package is installed or removed) stay the same.
 */

/** Library name (as in requirements.txt) → installed version ('' when unknown). */
export type LibraryVersions = Record<string, string>;

/** Dockerfile.sandbox runs record_libraries.py with `--require` for these: an image without them is never built. */
const GUARANTEED = ['dill', 'matplotlib', 'numpy', 'pandas'];

// From controller/agent/ when run with tsx, from dist/controller/agent/ when compiled (Dockerfile.controller).
const SANDBOX_IMAGE_DIR =
  ['../../sandbox-image/', '../../../sandbox-image/']
    .map((relative) => fileURLToPath(new URL(relative, import.meta.url)))
    .find((dir) => existsSync(join(dir, 'record_libraries.py'))) ?? fileURLToPath(new URL('../../sandbox-image/', import.meta.url));

/** What the Cloud Run image recorded, where the controller's build put it. */
const RECORDED_LIBRARIES_PATH = join(SANDBOX_IMAGE_DIR, 'libraries.json');

/** The environment the local sandbox gives the runner (sandbox/local/local-sandbox.ts), so the probe sees what steps see. */
const PROBE_ENVIRONMENT = {
  PATH: '/usr/local/bin:/usr/bin:/bin',
  HOME: '/tmp',
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
  MPLBACKEND: 'Agg',
  PYTHONDONTWRITEBYTECODE: '1',
};

const run = promisify(execFile);

export interface LibraryList {
  libraries: LibraryVersions;
  /** Where the list came from, for the start-up log line. */
  source: 'recorded' | 'guaranteed' | 'probed' | 'cached';
}

/** Cloud Run: the list the sandbox image recorded; the guaranteed few when the file is absent. */
export async function recordedLibraries(path = RECORDED_LIBRARIES_PATH): Promise<LibraryList> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return { libraries: Object.fromEntries(GUARANTEED.map((name) => [name, ''])), source: 'guaranteed' };
  }
  return { libraries: parseLibraries(text, path), source: 'recorded' };
}

/**
 * Local: what `python` can import of `requirementsPath`, from the cache when it still holds, else by running
 * record_libraries.py (one process importing each library) and caching the answer in `cacheDir`.
 */
export async function probeLibraries(options: { python: string; requirementsPath?: string; cacheDir?: string }): Promise<LibraryList> {
  const requirementsPath = options.requirementsPath ?? join(SANDBOX_IMAGE_DIR, 'requirements.txt');
  const script = join(SANDBOX_IMAGE_DIR, 'record_libraries.py');
  const cacheFile = options.cacheDir === undefined ? undefined : join(options.cacheDir, `libraries-${await cacheKey(options.python, requirementsPath, script)}.json`);
  if (cacheFile !== undefined) {
    const cached = await readFile(cacheFile, 'utf8').then((text) => parseLibraries(text, cacheFile)).catch(() => undefined);
    if (cached !== undefined) return { libraries: cached, source: 'cached' };
  }
  const { stdout } = await run(options.python, [script, requirementsPath], { env: PROBE_ENVIRONMENT, cwd: '/', timeout: 120_000, maxBuffer: 1 << 20 });
  const libraries = parseLibraries(stdout, script);
  if (cacheFile !== undefined) await writeAtomically(cacheFile, JSON.stringify(libraries)).catch(() => {});
  return { libraries, source: 'probed' };
}

function parseLibraries(text: string, source: string): LibraryVersions {
  const value: unknown = JSON.parse(text);
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.values(value).every((version) => typeof version === 'string')) {
    throw new Error(`${source}: expected a JSON object of library names and versions`);
  }
  return value as LibraryVersions;
}

/** Everything the probe's answer depends on; sys.path folders with their modification times come from the interpreter. */
async function cacheKey(python: string, requirementsPath: string, script: string): Promise<string> {
  const { stdout } = await run(
    python,
    ['-c', 'import json, os, sys; print(json.dumps([sys.executable] + [[p, os.stat(p).st_mtime_ns] for p in sys.path if os.path.isdir(p)]))'],
    { env: PROBE_ENVIRONMENT, cwd: '/', timeout: 20_000 },
  );
  const hash = createHash('sha256');
  for (const part of [python, stdout, await readFile(requirementsPath, 'utf8'), await readFile(script, 'utf8')]) hash.update(part).update('\0');
  return hash.digest('hex').slice(0, 32);
}

async function writeAtomically(path: string, text: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, text);
  await rename(temporary, path);
}
