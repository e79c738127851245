/**
 * The local store's compare-and-swap (controller/workspace/versioned-file.ts) holds across writers in one
 * process and across processes sharing DATA_DIR, and a writer killed between claiming a version and publishing
 * it never leaves the record stuck.
 */
import { spawn } from 'node:child_process';
import { link, mkdir, mkdtemp, readdir, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { appendHistory, loadHistory } from '../controller/agent/history.js';
import { readVersioned, removeVersioned, writeVersioned } from '../controller/workspace/versioned-file.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { StateConflictError } from '../controller/workspace/workspace.js';
import { PROJECT_ROOT } from './helpers/bot-process.js';

const thread = { team: 'T1', channel: 'C1', threadTs: '1700000000.000100' };

function runChild(dataDir: string, label: string, count: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/append-history-child.ts', dataDir, label, String(count)], {
      cwd: PROJECT_ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', reject);
    child.on('exit', resolve);
  });
}

describe('LocalWorkspace state writes', () => {
  test('concurrent appends in one process lose nothing', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'oi-cas-'));
    // One workspace object per writer, as separate turns would have.
    await Promise.all(
      Array.from({ length: 12 }, (_, index) => appendHistory(new LocalWorkspaceStore(dataDir).open(thread), [{ role: 'user', content: `w${index}` }], 1000)),
    );
    const contents = (await loadHistory(new LocalWorkspaceStore(dataDir).open(thread))).map((message) => message.content);
    expect([...contents].sort()).toStrictEqual(Array.from({ length: 12 }, (_, index) => `w${index}`).sort());
  });

  test('two processes appending to one history at once lose nothing', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'oi-cas-'));
    const codes = await Promise.all([runChild(dataDir, 'a', 15), runChild(dataDir, 'b', 15), runChild(dataDir, 'c', 15)]);
    expect(codes).toStrictEqual([0, 0, 0]);
    const contents = (await loadHistory(new LocalWorkspaceStore(dataDir).open(thread))).map((message) => String(message.content));
    expect(contents).toHaveLength(45);
    for (const label of ['a', 'b', 'c']) {
      expect(contents.filter((content) => content.startsWith(`${label}-`)), 'each writer in its own order').toStrictEqual(Array.from({ length: 15 }, (_, index) => `${label}-${index}`));
    }
    const files = await readdir(join(dataDir, 'threads', 'T1', 'C1', thread.threadTs));
    expect(files.filter((name) => name.endsWith('.tmp')), 'no temporary file left').toStrictEqual([]);
  });

  test('a stale writer gets a conflict, also when the record it expected was replaced twice', async () => {
    const workspace = new LocalWorkspaceStore(await mkdtemp(join(tmpdir(), 'oi-cas-'))).open(thread);
    const first = await workspace.writeState('usage', { n: 1 }, null);
    const second = await workspace.writeState('usage', { n: 2 }, first);
    await workspace.writeState('usage', { n: 3 }, second);
    await expect(workspace.writeState('usage', { n: 99 }, first)).rejects.toThrow(StateConflictError);
    await expect(workspace.writeState('usage', { n: 99 }, second)).rejects.toThrow(StateConflictError);
    expect((await workspace.readState<{ n: number }>('usage'))?.value).toStrictEqual({ n: 3 });
  });
});

describe('versioned records', () => {
  test('a writer killed between claiming and publishing: the next writer publishes its claim, then goes on', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'oi-cas-')), 'record.json');
    const version = (await writeVersioned(path, 'one', 'absent'))!;
    // What a killed writer leaves: the complete next version, claimed, never renamed over the record.
    const orphan = `${path}.orphan`;
    await writeFile(orphan, JSON.stringify({ version: version + 1, value: 'two' }));
    await link(orphan, `${path}.v${version + 1}`);
    expect((await readVersioned(path))?.value, 'readers still see the last published version').toBe('one');
    expect(await writeVersioned(path, 'three', version), 'the stale expectation loses').toBeUndefined();
    expect(await readVersioned(path)).toStrictEqual({ value: 'two', version: version + 1 });
    expect(await writeVersioned(path, 'three', version + 1)).toBe(version + 2);
  });

  test('a late rename by a stalled writer is repaired by the next write, and no version is lost', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'oi-cas-')), 'record.json');
    const one = (await writeVersioned(path, 'one', 'absent'))!;
    const stalled = `${path}.stalled`;
    await writeFile(stalled, JSON.stringify({ version: one + 1, value: 'two' }));
    await link(stalled, `${path}.v${one + 1}`); // the stalled writer claimed version 2...
    expect(await writeVersioned(path, 'x', one)).toBeUndefined(); // ...another writer published it for it
    expect(await writeVersioned(path, 'three', one + 1)).toBe(one + 2);
    await link(stalled, `${path}.late`);
    await rename(`${path}.late`, path); // ...and its late rename lands now
    expect((await readVersioned(path))?.value, 'the record went back for a moment').toBe('two');
    expect(await writeVersioned(path, 'four', one + 1), 'a write based on it conflicts').toBeUndefined();
    expect(await readVersioned(path)).toStrictEqual({ value: 'three', version: one + 2 });
    expect(await writeVersioned(path, 'four', one + 2)).toBe(one + 3);
  });

  test('a removed record reads as absent and can be created again, with a higher version', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'oi-cas-')), 'lease.json');
    const created = (await writeVersioned(path, { holder: 'a' }, 'absent'))!;
    expect(await writeVersioned(path, { holder: 'b' }, 'absent'), 'create-if-absent on an existing record').toBeUndefined();
    expect(await removeVersioned(path, created + 1)).toBe(false);
    expect(await removeVersioned(path, created)).toBe(true);
    expect(await readVersioned(path)).toBeUndefined();
    expect(await removeVersioned(path, created), 'already removed').toBe(false);
    const again = await writeVersioned(path, { holder: 'b' }, 'absent');
    expect(again).toBeGreaterThan(created);
  });

  test('a state file written before versioned claims (no claim next to it) is replaced normally', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'oi-cas-'));
    const workspace = new LocalWorkspaceStore(dataDir).open(thread);
    const stateDir = join(dataDir, 'threads', 'T1', 'C1', thread.threadTs);
    await mkdir(stateDir, { recursive: true });
    await writeFile(join(stateDir, 'messages.json'), JSON.stringify({ version: 3, value: [{ role: 'user', content: 'old' }] }));
    await appendHistory(workspace, [{ role: 'user', content: 'new' }]);
    expect((await loadHistory(workspace)).map((message) => message.content)).toStrictEqual(['old', 'new']);
    expect((await workspace.readState('messages'))?.version).toBe('4');
  });
});
