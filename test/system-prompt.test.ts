import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { probeLibraries, recordedLibraries } from '../controller/agent/libraries.js';
import { buildSystemPrompt } from '../controller/agent/system-prompt.js';
import { sandboxLibraries } from '../controller/create-bot.js';

/**
 * The system prompt names only what the configured sandbox can import (controller/agent/libraries.ts): the local
 * sandbox's Python is probed with sandbox-image/record_libraries.py (real imports), the Cloud Run image's recorded
 * list is read. Real Pythons here: Debian's /usr/bin/python3 (after scripts/bootstrap.sh: pandas, seaborn, ...,
 * but not yfinance) and the same interpreter without its site packages (-S), which has none of them.
 */

const SYSTEM_PYTHON = '/usr/bin/python3';
let dir: string;
/** /usr/bin/python3 -S: the standard library only, as a Python without the data libraries would be. */
let barePython: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oi-libraries-'));
  barePython = join(dir, 'bare-python3');
  await writeFile(barePython, `#!/bin/sh\nexec ${SYSTEM_PYTHON} -S "$@"\n`);
  await chmod(barePython, 0o755);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const promptFor = (libraries: Record<string, string>) => buildSystemPrompt({ libraries, maxSteps: 7, stepTimeoutSec: 30, network: false });

test('the system prompt names every library it is given, with its version, and the working directory', () => {
  const prompt = promptFor({ pandas: '3.1.1', 'scikit-learn': '1.9.1', dill: '' });
  expect(prompt).toMatch(/installed besides the standard library: pandas 3\.1\.1, scikit-learn 1\.9\.1, dill\. Nothing else is installed/);
  expect(prompt).toMatch(/working directory is this thread's workspace/);
  expect(prompt).toMatch(/at most 7 steps/);
  expect(prompt).toMatch(/no network access/);
  expect(promptFor({})).toMatch(/No third-party Python libraries are installed/);
});

test('record_libraries.py reads requirement names without versions, extras, markers, options or comments', async () => {
  const requirements = join(dir, 'parsed-requirements.txt');
  await writeFile(requirements, '# c\npandas==2.2.3\nnumpy>=2 # fast\n\nrequests[socks]\n-r other.txt\nPyMuPDF ; python_version > "3"\n');
  // The bare interpreter has none of them, so each name it parsed is reported as left out, in order.
  const result = spawnSync(barePython, [join(import.meta.dirname, '../sandbox-image/record_libraries.py'), requirements], { encoding: 'utf8' });
  expect(result.status, result.stderr).toBe(0);
  expect([...result.stderr.matchAll(/record_libraries: (\S+) left out/g)].map((match) => match[1])).toStrictEqual(['pandas', 'numpy', 'requests', 'PyMuPDF']);
});

describe('the local sandbox: a probe of its Python', () => {
  test('a Python that lacks the libraries gets a prompt that names none of them', async () => {
    const { libraries, source } = await probeLibraries({ python: barePython });
    expect(source).toBe('probed');
    expect(libraries).toStrictEqual({});
    const prompt = promptFor(libraries);
    for (const name of ['pandas', 'numpy', 'matplotlib', 'seaborn', 'scikit-learn', 'yfinance']) expect(prompt).not.toContain(name);
  });

  test("Debian's Python: what imports is named with its installed version; what is missing (or not even a library) is not", { timeout: 60_000 }, async () => {
    const requirements = join(dir, 'requirements.txt');
    await writeFile(requirements, '# asked for\npandas==3.1.1\nnumpy>=2 # fast\nyfinance==1.7.0\nno-such-library-oi==1.0\n');
    const { libraries } = await probeLibraries({ python: SYSTEM_PYTHON, requirementsPath: requirements });
    expect(Object.keys(libraries)).toStrictEqual(['numpy', 'pandas']);
    const installed = spawnSync(SYSTEM_PYTHON, ['-c', 'import pandas; print(pandas.__version__)'], { encoding: 'utf8' }).stdout.trim();
    expect(libraries.pandas, 'the installed version, not the one asked for').toBe(installed);
    const prompt = promptFor(libraries);
    expect(prompt).toContain(`pandas ${installed}`);
    expect(prompt).not.toContain('yfinance');
    expect(prompt).not.toContain('no-such-library-oi');
  });

  test('the answer is cached per interpreter and probed again when the list changes', { timeout: 60_000 }, async () => {
    const cacheDir = join(dir, 'cache');
    const requirements = join(dir, 'cached-requirements.txt');
    await writeFile(requirements, 'dill\n');
    const first = await probeLibraries({ python: SYSTEM_PYTHON, requirementsPath: requirements, cacheDir });
    const again = await probeLibraries({ python: SYSTEM_PYTHON, requirementsPath: requirements, cacheDir });
    expect([first.source, again.source]).toStrictEqual(['probed', 'cached']);
    expect(again.libraries).toStrictEqual(first.libraries);
    expect(Object.keys(first.libraries)).toStrictEqual(['dill']);
    const bare = await probeLibraries({ python: barePython, requirementsPath: requirements, cacheDir });
    expect(bare, 'another interpreter has its own entry').toStrictEqual({ libraries: {}, source: 'probed' });
    await writeFile(requirements, 'dill\nnumpy\n');
    const changed = await probeLibraries({ python: SYSTEM_PYTHON, requirementsPath: requirements, cacheDir });
    expect(changed.source).toBe('probed');
    expect(Object.keys(changed.libraries)).toStrictEqual(['dill', 'numpy']);
    expect((await readdir(cacheDir)).filter((name) => name.endsWith('.tmp'))).toStrictEqual([]);
  });

  test('SANDBOX_PYTHON decides which interpreter is probed', { timeout: 60_000 }, async () => {
    const bare = await sandboxLibraries({ sandbox: { backend: 'local', python: barePython, network: 'egress', isolation: 'off', session: false, sessionIdleSec: 600, maxSessions: 1 } }, { searchPath: '/usr/bin:/bin' }).catch(
      (error: unknown) => error,
    );
    // The bare interpreter cannot import dill, so the local sandbox refuses it before anything is probed.
    expect(String(bare)).toMatch(/No usable Python for the sandbox/);
    // The cache folder main.ts uses: bots started by other tests then find the answer there.
    const cacheDir = join(homedir(), '.cache', 'slack-code-interpreter');
    const system = await sandboxLibraries({ sandbox: { backend: 'local', python: SYSTEM_PYTHON, network: 'egress', isolation: 'off', session: false, sessionIdleSec: 600, maxSessions: 1 } }, { searchPath: '/usr/bin:/bin', cacheDir });
    expect(system.libraries).toHaveProperty('pandas');
    expect(system.libraries).not.toHaveProperty('yfinance');
  });
});

describe('the Cloud Run sandbox: the list its image recorded', () => {
  test('libraries.json is read as it is; the prompt names exactly its libraries', async () => {
    const path = join(dir, 'libraries.json');
    await writeFile(path, JSON.stringify({ dill: '0.4.1', pandas: '3.1.1', PyMuPDF: '2.1' }));
    const recorded = await recordedLibraries(path);
    expect(recorded).toStrictEqual({ libraries: { dill: '0.4.1', pandas: '3.1.1', PyMuPDF: '2.1' }, source: 'recorded' });
    const prompt = promptFor(recorded.libraries);
    expect(prompt).toContain('PyMuPDF 2.1');
    expect(prompt).not.toContain('seaborn');
  });

  test('without libraries.json only what every image has is named (its build fails without them)', async () => {
    const missing = await recordedLibraries(join(dir, 'absent.json'));
    expect(missing).toStrictEqual({ libraries: { dill: '', matplotlib: '', numpy: '', pandas: '' }, source: 'guaranteed' });
    await writeFile(join(dir, 'broken.json'), '["pandas"]');
    await expect(recordedLibraries(join(dir, 'broken.json'))).rejects.toThrow(/expected a JSON object of library names and versions/);
  });
});
