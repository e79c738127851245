import { Readable } from 'node:stream';
import { expect, test } from 'vitest';
import { StateConflictError, UnsafePathError, type WorkspaceStore } from '../../controller/workspace/workspace.js';

/** Behaviour every Workspace implementation must share (local directory and GCS prefix alike). */
export function workspaceContract(name: string, makeStore: () => Promise<WorkspaceStore>): void {
  const threadX = { team: 'T1', channel: 'C1', threadTs: '1700000000.000100' };
  const threadY = { team: 'T1', channel: 'C1', threadTs: '1700000000.0001' };

  test(`${name}: write, read, stat, list and delete`, async () => {
    const workspace = (await makeStore()).open(threadX);
    expect(await workspace.list()).toStrictEqual([]);
    await workspace.write('data.csv', 'a,b\n1,2\n');
    await workspace.write('charts/plot.png', Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    await workspace.write('.oi/state.pkl', 'internal');
    expect((await workspace.list()).map((entry) => entry.path)).toStrictEqual(['charts/plot.png', 'data.csv']);
    expect((await workspace.list({ includeInternal: true })).map((entry) => entry.path)).toContain('.oi/state.pkl');
    expect((await workspace.stat('data.csv'))?.size).toBe(8);
    expect(await workspace.stat('missing.csv')).toBeUndefined();
    expect(await readAll(await workspace.read('data.csv'))).toBe('a,b\n1,2\n');
    await workspace.delete('data.csv');
    expect(await workspace.stat('data.csv')).toBeUndefined();
  });

  test(`${name}: a streamed write that fails leaves nothing behind`, async () => {
    const workspace = (await makeStore()).open(threadX);
    const failing = new Readable({
      read() {
        this.push(Buffer.alloc(64 * 1024, 1));
        this.destroy(new Error('connection reset'));
      },
    });
    await expect(workspace.write('broken.bin', failing)).rejects.toThrow(/connection reset/);
    expect(await workspace.stat('broken.bin')).toBeUndefined();
    expect((await workspace.list({ includeInternal: true })).filter((entry) => !entry.path.startsWith('.oi/'))).toStrictEqual(await workspace.list());
    expect((await workspace.list()).filter((entry) => entry.path.includes('broken'))).toStrictEqual([]);
  });

  test(`${name}: a write whose source fails at once leaves nothing behind, even later`, async () => {
    const workspace = (await makeStore()).open(threadX);
    // The source fails before the destination can even have been opened (a refused download):
    // nothing may appear afterwards either.
    async function* refused(): AsyncGenerator<Buffer> {
      await Promise.resolve();
      throw new Error('refused at once');
    }
    for (let attempt = 0; attempt < 1000; attempt++) {
      await expect(workspace.write(`early-${attempt}.bin`, Readable.from(refused()))).rejects.toThrow(/refused at once/);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await workspace.list({ includeInternal: true })).toStrictEqual([]);
    expect(await workspace.list()).toStrictEqual([]);
  });

  test(`${name}: threads with the same file name (and prefix-like ids) never collide`, async () => {
    const store = await makeStore();
    await store.open(threadX).write('data.csv', 'from X');
    await store.open(threadY).write('data.csv', 'from Y');
    expect(await readAll(await store.open(threadX).read('data.csv'))).toBe('from X');
    expect(await readAll(await store.open(threadY).read('data.csv'))).toBe('from Y');
    expect((await store.open(threadY).list()).map((entry) => entry.path)).toStrictEqual(['data.csv']);
  });

  test(`${name}: unsafe paths are refused`, async () => {
    const workspace = (await makeStore()).open(threadX);
    for (const path of ['../x.csv', '../../etc/passwd', '/etc/passwd', 'a/../../b', 'bad\u0000name', 'a\\b', '']) {
      await expect(workspace.write(path, 'x'), path).rejects.toThrow(UnsafePathError);
      await expect(workspace.read(path), path).rejects.toThrow(UnsafePathError);
    }
  });

  test(`${name}: state is versioned and a stale writer gets a conflict`, async () => {
    const workspace = (await makeStore()).open(threadX);
    expect(await workspace.readState('messages')).toBeUndefined();
    const first = await workspace.writeState('messages', [{ role: 'user', content: 'hi' }], null);
    await expect(workspace.writeState('messages', [], null)).rejects.toThrow(StateConflictError);
    const second = await workspace.writeState('messages', [{ role: 'user', content: 'again' }], first);
    expect(first).not.toBe(second);
    await expect(workspace.writeState('messages', [], first)).rejects.toThrow(StateConflictError);
    const state = await workspace.readState<{ content: string }[]>('messages');
    expect(state?.value[0]?.content).toBe('again');
    expect(state?.version).toBe(second);
    // State is not a workspace file: the code never sees it.
    expect((await workspace.list({ includeInternal: true })).filter((entry) => entry.path.includes('messages'))).toStrictEqual([]);
  });

  test(`${name}: retention removes only old threads`, async () => {
    const store = await makeStore();
    await store.open(threadX).write('old.csv', 'x');
    await store.open(threadX).writeState('messages', [], null);
    const { removedThreads: none } = await store.removeOlderThan(Date.now() - 60_000);
    expect(none).toStrictEqual([]);
    const { removedThreads } = await store.removeOlderThan(Date.now() + 60_000);
    expect(removedThreads).toContain('T1/C1/1700000000.000100');
    expect(await store.open(threadX).list()).toStrictEqual([]);
    expect(await store.open(threadX).readState('messages')).toBeUndefined();
  });
}

export async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
