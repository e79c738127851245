import { afterAll, describe, expect, it } from 'vitest';
import { RunnerSession, newWorkspace, removeWorkspaces, runOneShot } from './helpers/runner-process.js';

// Issue 14, findings 1 and 2: every string and list the runner returns is bounded by the runner
// (caps in sandbox-image/runner_bounds.py, listed in docs/runner-protocol.md).

afterAll(removeWorkspaces);
const MIB = 1024 * 1024;
const HUGE_ERROR = 'raise RuntimeError("A" + "x" * 20_000_000 + "Z")';

describe('runner.py bounds its results', () => {
  it('an exception with a 20 MB message gives a result under 100 KB in a session (head and tail kept)', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const result = await session.run(HUGE_ERROR);
    const bytes = session.lineBytes.at(-1)!;
    expect(bytes).toBeLessThan(100_000);
    expect(result.error?.name).toBe('RuntimeError');
    expect(result.error!.value.length).toBeLessThanOrEqual(4_000);
    expect(result.error!.value.startsWith('Ax')).toBe(true);
    expect(result.error!.value.endsWith('xZ')).toBe(true);
    expect(result.error!.value).toMatch(/\[\.\.\. \d+ characters cut \.\.\.\]/);
    expect(result.error!.traceback.length).toBeLessThanOrEqual(20_000);
    expect(result.error!.traceback).toMatch(/^Traceback \(most recent call last\):\n {2}File "<step /);
    expect(result.error!.traceback.endsWith('xZ\n')).toBe(true);
    expect((await session.run('print("alive")')).stdout).toBe('alive\n');
    await session.exit();
  });

  it('the same in one-shot mode: result.json stays small', () => {
    const { result, resultBytes } = runOneShot(newWorkspace(), HUGE_ERROR);
    expect(resultBytes).toBeLessThan(100_000);
    expect(result.error?.name).toBe('RuntimeError');
  });

  it('200,000 files created: at most 1000 are listed, with a note saying how many were left out', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const result = await session.run(
      'import os\nos.makedirs("many")\nfor i in range(200_000):\n    os.close(os.open(f"many/{i:06d}.txt", os.O_CREAT | os.O_WRONLY, 0o600))',
      { timeoutSec: 600, replyTimeoutMs: 280_000 },
    );
    expect(result.error).toBeNull();
    expect(result.files).toHaveLength(1000);
    expect(result.files[0]).toEqual({ path: 'many/000000.txt', change: 'created', size: 0 });
    expect(result.notes).toContain('199000 more changed files are not listed (at most 1000 are listed, paths of at most 1024 characters).');
    expect(session.lineBytes.at(-1)!).toBeLessThan(200_000);
    await session.exit();
  }, 300_000);

  it('unsaved names are capped in number and length; notes are capped too', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    const result = await session.run(
      [
        'handles = [open(f"h{i}.txt", "w") for i in range(150)]',
        'for i, handle in enumerate(handles):',
        '    globals()[f"handle_{i:03d}"] = handle',
        'globals()["n" * 100_000] = open("long.txt", "w")',
        'del handles',
      ].join('\n'),
    );
    expect(result.unsaved).toHaveLength(100);
    expect(Math.max(...result.unsaved.map((name) => name.length))).toBeLessThanOrEqual(200);
    // 150 handle_NNN, the loop variable `handle` and the long name: 152 in all.
    expect(result.notes).toContain('52 more names could not be saved and are not listed.');
    await session.exit();
  });

  it('stdout and stderr keep their head and tail; a reply never exceeds 1 MiB, even when JSON escapes grow it', async () => {
    const { session } = await RunnerSession.start(newWorkspace());
    // 256 KB of control characters become 1.5 MB of \u0001 escapes: the reply is shortened to fit.
    const result = await session.run('import sys\nsys.stdout.write("\\x01" * 40_000_000)\nsys.stderr.write("\\x02" * 40_000_000)', {
      maxOutputBytes: 10 * MIB,
    });
    expect(result.outputTruncated).toBe(true);
    expect(session.lineBytes.at(-1)!).toBeLessThanOrEqual(MIB);
    expect(result.notes.at(-1)).toMatch(/too large and was shortened/);
    await session.exit();
  });
});
