import { spawn } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { measureWorkspace, remainingBytes, stepFileLimitMb, WorkspaceWatcher } from '../controller/sandbox/local/workspace-quota.js';
import { quotaExceededMessage, uploadRefusal } from '../controller/workspace/quota.js';

// Issue 14, finding 3: a thread cannot fill the disk. Its workspace has a quota; a step is stopped
// near it (RLIMIT_FSIZE for one file, a watcher for many), never told after writing gigabytes.

const MB = 1024 * 1024;
const root = mkdtempSync(join(tmpdir(), 'quota-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('workspace size', () => {
  test('counts allocated blocks: a sparse file costs nothing, a hard link once, a symlink is not followed', async () => {
    const dir = join(root, 'measure');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'sub', 'data.bin'), Buffer.alloc(3 * MB, 1));
    linkSync(join(dir, 'sub', 'data.bin'), join(dir, 'again.bin'));
    writeFileSync(join(dir, 'sparse.bin'), '');
    truncateSync(join(dir, 'sparse.bin'), 10 * 1024 * MB);
    symlinkSync('/usr', join(dir, 'usr-link'));
    const usage = await measureWorkspace(dir);
    expect(usage.bytes).toBeGreaterThanOrEqual(3 * MB);
    expect(usage.bytes).toBeLessThan(4 * MB);
    expect(usage.entries).toBe(5);
  });

  test('what a step may write: the quota left, capped by the free disk minus the reserve for history', () => {
    expect(remainingBytes({ usedBytes: 1500 * MB, quotaBytes: 2048 * MB, freeBytes: 100_000 * MB })).toBe(548 * MB);
    expect(remainingBytes({ usedBytes: 0, quotaBytes: 2048 * MB, freeBytes: 600 * MB, reserveBytes: 512 * MB })).toBe(88 * MB);
    expect(remainingBytes({ usedBytes: 3000 * MB, quotaBytes: 2048 * MB, freeBytes: 100_000 * MB })).toBe(0);
    expect(stepFileLimitMb(1024, 548 * MB)).toBe(548);
    expect(stepFileLimitMb(1024, 5000 * MB)).toBe(1024);
    expect(stepFileLimitMb(1024, 0)).toBe(1);
  });

  test('one sentence with the sizes and how to free space; uploads that would not fit are refused', () => {
    expect(quotaExceededMessage(2100 * MB, 2048 * MB)).toBe(
      "The step was stopped because the thread's workspace reached its size limit (2100 MB used of 2048 MB, " +
        'SANDBOX_WORKSPACE_MAX_MB): delete files you no longer need (os.remove, shutil.rmtree) or write smaller outputs, then try again.',
    );
    expect(uploadRefusal('big.csv', 100 * MB, 2000 * MB, 2048 * MB)).toMatch(/^big\.csv \(100 MB\) was not saved: .* 2000 MB of its 2048 MB limit/);
    expect(uploadRefusal('stream.csv', undefined, 2000 * MB, 2048 * MB)).toMatch(/^stream\.csv was not saved/);
    expect(uploadRefusal('small.csv', 10 * MB, 2000 * MB, 2048 * MB)).toBe(undefined);
  });
});

/** Runs Python in a child process; resolves with its exit and output. */
function python(code: string, cwd: string): { done: Promise<{ code: number | null; stdout: string }>; kill: () => void } {
  const child = spawn('/usr/bin/python3', ['-c', code], { cwd, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  return {
    done: new Promise((resolve) => child.once('close', (exitCode) => resolve({ code: exitCode, stdout }))),
    kill: () => child.kill('SIGKILL'),
  };
}

describe('a disk fill is stopped near the quota', () => {
  test('many files, each small: the watcher ends the step soon after the workspace crosses the quota', async () => {
    const dir = join(root, 'many-files');
    mkdirSync(dir);
    const quota = 64 * MB;
    // Up to 4 GB in 1 MB files, each synced so the blocks are really allocated when measured.
    const writer = python(
      'import os\nblock = os.urandom(1024 * 1024)\nfor i in range(4096):\n    with open(f"f{i}", "wb") as f:\n        f.write(block); f.flush(); os.fsync(f.fileno())\nprint("done")',
      dir,
    );
    let crossedAt = 0;
    const watcher = new WorkspaceWatcher(dir, quota, (used) => {
      crossedAt = used;
      writer.kill();
    }, 50).start();
    const result = await writer.done;
    watcher.stop();
    expect(result.stdout, 'the writer must be stopped, not finish').toBe('');
    expect(crossedAt).toBeGreaterThan(quota);
    const final = await measureWorkspace(dir);
    // Stopped near the limit: what one interval of writing adds, not the 4 GB the step asked for.
    expect(final.bytes).toBeLessThan(quota + 256 * MB);
  });

  test('one big file: RLIMIT_FSIZE at the remaining quota stops it exactly there', async () => {
    const dir = join(root, 'one-file');
    mkdirSync(dir);
    const limitMb = stepFileLimitMb(1024, 32 * MB);
    const writer = python(
      [
        'import resource, signal',
        'signal.signal(signal.SIGXFSZ, signal.SIG_IGN)',
        `resource.setrlimit(resource.RLIMIT_FSIZE, (${limitMb * MB}, ${limitMb * MB}))`,
        'try:',
        '    with open("big.bin", "wb") as f:',
        '        for _ in range(200):',
        '            f.write(b"x" * 1024 * 1024)',
        'except OSError as e:',
        '    print(e.strerror)',
      ].join('\n'),
      dir,
    );
    const result = await writer.done;
    expect(result.stdout.trim()).toBe('File too large');
    expect((await measureWorkspace(dir)).bytes).toBeLessThanOrEqual(33 * MB);
  });
});
