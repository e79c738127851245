import { spawnSync } from 'node:child_process';
import { SandboxError } from '../sandbox.js';

/**
 * Picks the Python interpreter of the local sandbox: SANDBOX_PYTHON when set, else the first of
 * /usr/bin/python3 and `python3` that can `import dill` (the runner's only dependency besides the
 * standard library; Debian's python3 carries the data libraries too). Probed once per process.
 */

export interface PythonInfo {
  /** The command as configured or found (absolute path or a name looked up on PATH). */
  command: string;
  /** sys.executable: absolute path of the interpreter (not resolved, so a virtualenv stays a virtualenv). */
  executable: string;
  /** sys.prefix and sys.base_prefix: folders a jail must show read-only when they are not under /usr. */
  prefixes: string[];
}

const DEFAULT_PYTHON_CANDIDATES = ['/usr/bin/python3', 'python3'];

const probeScript =
  'import json, os, sys, dill; print(json.dumps({"executable": os.path.abspath(sys.executable), ' +
  '"prefixes": sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)})}))';

const cache = new Map<string, PythonInfo | string>();

/** Runs the probe (a bare name is looked up on `searchPath`); returns the interpreter's details, or the reason it is unusable. */
function probe(command: string, searchPath: string): PythonInfo | string {
  const key = `${searchPath}\0${command}`;
  const cached = cache.get(key);
  if (cached !== undefined) return cached;
  const result = spawnSync(command, ['-c', probeScript], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { PATH: searchPath, LANG: 'C.UTF-8' },
  });
  let outcome: PythonInfo | string;
  if (result.error !== undefined) {
    outcome = result.error.message;
  } else if (result.status !== 0) {
    const lastLine = result.stderr.trim().split('\n').pop() ?? '';
    outcome = lastLine === '' ? `exit status ${result.status}` : lastLine;
  } else {
    const parsed = JSON.parse(result.stdout) as { executable: string; prefixes: string[] };
    outcome = { command, executable: parsed.executable, prefixes: parsed.prefixes };
  }
  cache.set(key, outcome);
  return outcome;
}

export function resolvePython(configured: string | undefined, searchPath: string): PythonInfo {
  const candidates = configured === undefined ? DEFAULT_PYTHON_CANDIDATES : [configured];
  const reasons: string[] = [];
  for (const candidate of candidates) {
    const outcome = probe(candidate, searchPath);
    if (typeof outcome !== 'string') return outcome;
    reasons.push(`${candidate}: ${outcome}`);
  }
  const hint =
    configured === undefined
      ? 'install python3 with dill (Debian: apt-get install python3-dill python3-pandas python3-matplotlib) or set SANDBOX_PYTHON'
      : 'set SANDBOX_PYTHON to a Python 3 interpreter that can import dill';
  throw new SandboxError('start_failed', `No usable Python for the sandbox (${reasons.join('; ')}): ${hint}.`);
}
