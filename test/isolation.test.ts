import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { silentLogger } from '../controller/logger.js';
import { LocalSandbox } from '../controller/sandbox/local/local-sandbox.js';
import type { ResourceLimits, StepResult } from '../controller/sandbox/sandbox.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import type { Workspace } from '../controller/workspace/workspace.js';

// Issue 5: with bubblewrap, a thread's code sees only its own workspace, and limits stop abuse
// without hurting other threads. Skipped (with the reason) where bwrap cannot run.

const LIMITS: ResourceLimits = { memoryMb: 512, cpuSec: 60, maxProcesses: 32, maxFileMb: 50 };

function makeSandbox(network: 'egress' | 'off'): LocalSandbox | string {
  try {
    return new LocalSandbox({ network, isolation: 'required', limits: LIMITS, logger: silentLogger, session: false });
  } catch (error) {
    return `bubblewrap unusable here: ${(error as Error).message}`;
  }
}

const sandbox = makeSandbox('off');
const skip = typeof sandbox === 'string' ? sandbox : false;
const dataDir = mkdtempSync(join(tmpdir(), 'isolation-test-'));
const store = new LocalWorkspaceStore(dataDir);
const threadX = store.open({ team: 'T1', channel: 'C1', threadTs: '1700000000.000100' });
const threadY = store.open({ team: 'T1', channel: 'C1', threadTs: '1700000000.000200' });
const hostDirOf = (workspace: Workspace) => (workspace.location as { dir: string }).dir;
afterAll(async () => {
  rmSync(dataDir, { recursive: true, force: true });
  if (typeof sandbox !== 'string') await sandbox.close();
});

async function runIn(workspace: Workspace, code: string, target = sandbox as LocalSandbox): Promise<StepResult> {
  return target.run(workspace, { language: 'python', code, timeoutSec: 30 });
}

/** Runs Python that prints one JSON line; returns it parsed. */
async function probe(workspace: Workspace, code: string): Promise<Record<string, unknown>> {
  const result = await runIn(workspace, code);
  expect(result.error, result.error?.traceback).toBeNull();
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

describe.skipIf(Boolean(skip))('bubblewrap isolation', () => {
  beforeAll(async () => {
    await threadX.write('secret-x.txt', 'only for X');
    await threadX.writeState('messages', [{ role: 'user', content: 'history of X' }], null);
    const result = await runIn(threadX, 'x_variable = "state of X"\nopen("made-by-x.txt", "w").write("x")');
    expect(result.error).toBeNull();
  });

  test("thread Y cannot list, read or write thread X's files by relative path, absolute path or glob", async () => {
    const xDir = hostDirOf(threadX);
    const found = await probe(
      threadY,
      [
        'import glob, json, os',
        'attempts = {}',
        'def attempt(name, action):',
        '    try:',
        '        attempts[name] = repr(action())',
        '    except Exception as e:',
        '        attempts[name] = type(e).__name__',
        `x_dir = ${JSON.stringify(xDir)}`,
        'attempt("list parent", lambda: os.listdir(".."))',
        'attempt("read relative", lambda: open("../1700000000.000100/secret-x.txt").read())',
        'attempt("read absolute", lambda: open(x_dir + "/secret-x.txt").read())',
        'attempt("write absolute", lambda: open(x_dir + "/planted.txt", "w").write("y"))',
        // A walk of the whole visible tree but the kernel's pseudo-filesystems and the (read-only) /usr.
        'def search(suffix):',
        '    hits = []',
        '    for top, dirs, files in os.walk("/"):',
        '        dirs[:] = [d for d in dirs if top != "/" or d not in ("proc", "sys", "dev", "usr")]',
        '        hits += [os.path.join(top, f) for f in files if f.endswith(suffix)]',
        '    return hits',
        'open("control-y.txt", "w").write("y")',
        'attempt("walk", lambda: search("-x.txt"))',
        'attempt("walk control", lambda: search("-y.txt"))',
        'attempt("glob control", lambda: glob.glob("../*/*-y.txt"))',
        'attempt("glob", lambda: glob.glob("../*/*-x.txt") + glob.glob("/*/*/*-x.txt") + glob.glob(x_dir + "/*") + glob.glob(x_dir + "/../*"))',
        'attempt("x state", lambda: open(x_dir + "/.oi/state.pkl", "rb").read())',
        'attempt("history", lambda: open(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(x_dir)))) + "/threads/T1/C1/1700000000.000100/messages.json").read())',
        'print(json.dumps({"attempts": attempts, "cwd": os.getcwd(), "x_variable": "x_variable" in globals()}))',
      ].join('\n'),
    );
    const attempts = found.attempts as Record<string, string>;
    expect(found.cwd).toBe('/workspace');
    expect(found.x_variable).toBe(false);
    expect(attempts['list parent']!).not.toMatch(/1700000000/);
    for (const name of ['read relative', 'read absolute', 'write absolute', 'x state', 'history']) {
      expect(['FileNotFoundError', 'PermissionError'], `${name}: ${attempts[name]}`).toContain(attempts[name]);
    }
    expect(attempts.glob).toBe('[]');
    expect(attempts.walk).toBe('[]');
    // The same searches do find Y's own file: they would have found X's had it been visible.
    expect(attempts['walk control']).toBe("['/workspace/control-y.txt']");
    expect(attempts['glob control']).toBe("['../workspace/control-y.txt']");
    expect(existsSync(join(xDir, 'planted.txt'))).toBe(false);
    expect(await threadX.stat('secret-x.txt').then((entry) => entry?.size)).toBe(10);
  });

  test('the code cannot read controller files, the host, or write outside /workspace; /tmp is private', async () => {
    const repositoryFile = resolve('package.json');
    const found = await probe(
      threadY,
      [
        'import json, os',
        'result = {}',
        `for path in [${JSON.stringify(repositoryFile)}, "/root", "/home", "/work", ${JSON.stringify(dataDir)}, "/etc/shadow", "/etc/passwd"]:`,
        '    result[path] = os.path.exists(path)',
        'writes = {}',
        'for path in ["/etc/planted", "/usr/planted", "/planted", "/opt/runner/planted"]:',
        '    try:',
        '        open(path, "w").write("x")',
        '        writes[path] = "written"',
        '    except OSError as e:',
        '        writes[path] = type(e).__name__',
        'open("/tmp/private-marker", "w").write("1")',
        'print(json.dumps({"exists": result, "writes": writes, "uid": os.getuid()}))',
      ].join('\n'),
    );
    for (const [path, exists] of Object.entries(found.exists as Record<string, boolean>)) {
      expect(exists, `${path} must not be visible`).toBe(false);
    }
    for (const [path, outcome] of Object.entries(found.writes as Record<string, string>)) {
      expect(outcome, `${path} must not be writable`).not.toBe('written');
    }
    expect(found.uid).not.toBe(0);
    expect(existsSync('/tmp/private-marker')).toBe(false);
    const next = await probe(threadY, 'import json, os\nprint(json.dumps({"tmp": os.listdir("/tmp")}))');
    expect(next.tmp).toStrictEqual([]);
  });

  test("SANDBOX_NETWORK=off has no network; egress still never reaches the host's loopback (issue 14)", async () => {
    const server = createServer((_request, response) => response.end('reachable'));
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const port = (server.address() as AddressInfo).port;
    const code = `import urllib.request\ntry:\n    print(urllib.request.urlopen("http://127.0.0.1:${port}/", timeout=5).read().decode())\nexcept Exception as e:\n    print("blocked", type(e).__name__)`;
    const egress = makeSandbox('egress');
    try {
      expect((await runIn(threadY, code)).stdout).toMatch(/^blocked/);
      // Before issue 14 the default (SANDBOX_NETWORK=true) shared the host's network and printed "reachable".
      if (typeof egress !== 'string') expect((await runIn(threadY, code, egress)).stdout).toMatch(/^blocked/);
    } finally {
      server.close();
      if (typeof egress !== 'string') await egress.close();
    }
  });

  test('a fork bomb is stopped by the process limit while another thread keeps working', async () => {
    const marker = '1000.71';
    const [bomb, other] = await Promise.all([
      runIn(
        threadY,
        // Bounded by the loop as a last resort; each child sleeps so that processes pile up.
        `import os, time\nfor i in range(2000):\n    if os.fork() == 0:\n        os.execvp("sleep", ["sleep", "${marker}"])`,
      ),
      runIn(threadX, 'import subprocess\nprint(subprocess.run(["echo", "still serving"], capture_output=True, text=True).stdout.strip(), x_variable)'),
    ]);
    expect(bomb.limit).toBe('processes');
    expect(bomb.error!.value).toMatch(/SANDBOX_MAX_PROCESSES=32/);
    expect(other.error, other.error?.traceback).toBeNull();
    expect(other.stdout).toBe('still serving state of X\n');
    for (let attempt = 0; attempt < 40 && sleepers(marker) > 0; attempt += 1) await new Promise((done) => setTimeout(done, 50));
    expect(sleepers(marker), 'the bomb processes die with the step').toBe(0);
  });

  test('a memory hog is stopped by the memory limit while another thread keeps working', async () => {
    const [hog, other] = await Promise.all([
      runIn(threadY, 'blocks = []\nfor i in range(100):\n    blocks.append(bytearray(100 * 1024 * 1024))'),
      runIn(threadX, 'print("fine")'),
    ]);
    expect(hog.limit).toBe('memory');
    expect(hog.error!.value).toMatch(/memory limit \(SANDBOX_MEMORY_MB=512\)/);
    expect(other.stdout).toBe('fine\n');
    const single = await runIn(threadY, 'data = bytearray(10 * 1024 ** 3)');
    expect(single.limit).toBe('memory');
  });
});

function sleepers(marker: string): number {
  return readdirSync('/proc').filter((name) => {
    if (!/^\d+$/.test(name)) return false;
    try {
      return readFileSync(`/proc/${name}/cmdline`, 'utf8') === `sleep\0${marker}\0`;
    } catch {
      return false;
    }
  }).length;
}
