import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { StateConflictError, UnsafePathError, type WorkspaceStore } from '../../controller/workspace/workspace.js';

/** Behaviour every Workspace implementation must share (local directory and GCS prefix alike). */
export function workspaceContract(name: string, makeStore: () => Promise<WorkspaceStore>): void {
  const threadX = { team: 'T1', channel: 'C1', threadTs: '1700000000.000100' };
  const threadY = { team: 'T1', channel: 'C1', threadTs: '1700000000.0001' };

  test(`${name}: write, read, stat, list and delete`, async () => {
    const workspace = (await makeStore()).open(threadX);
    assert.deepEqual(await workspace.list(), []);
    await workspace.write('data.csv', 'a,b\n1,2\n');
    await workspace.write('charts/plot.png', Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    await workspace.write('.oi/state.pkl', 'internal');
    assert.deepEqual((await workspace.list()).map((entry) => entry.path), ['charts/plot.png', 'data.csv']);
    assert.ok((await workspace.list({ includeInternal: true })).some((entry) => entry.path === '.oi/state.pkl'));
    assert.equal((await workspace.stat('data.csv'))?.size, 8);
    assert.equal(await workspace.stat('missing.csv'), undefined);
    assert.equal(await readAll(await workspace.read('data.csv')), 'a,b\n1,2\n');
    await workspace.delete('data.csv');
    assert.equal(await workspace.stat('data.csv'), undefined);
  });

  test(`${name}: a streamed write that fails leaves nothing behind`, async () => {
    const workspace = (await makeStore()).open(threadX);
    const failing = new Readable({
      read() {
        this.push(Buffer.alloc(64 * 1024, 1));
        this.destroy(new Error('connection reset'));
      },
    });
    await assert.rejects(workspace.write('broken.bin', failing), /connection reset/);
    assert.equal(await workspace.stat('broken.bin'), undefined);
    assert.deepEqual(
      (await workspace.list({ includeInternal: true })).filter((entry) => !entry.path.startsWith('.oi/')),
      (await workspace.list()),
    );
    assert.ok(!(await workspace.list()).some((entry) => entry.path.includes('broken')));
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
      await assert.rejects(workspace.write(`early-${attempt}.bin`, Readable.from(refused())), /refused at once/);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(await workspace.list({ includeInternal: true }), []);
    assert.deepEqual(await workspace.list(), []);
  });

  test(`${name}: threads with the same file name (and prefix-like ids) never collide`, async () => {
    const store = await makeStore();
    await store.open(threadX).write('data.csv', 'from X');
    await store.open(threadY).write('data.csv', 'from Y');
    assert.equal(await readAll(await store.open(threadX).read('data.csv')), 'from X');
    assert.equal(await readAll(await store.open(threadY).read('data.csv')), 'from Y');
    assert.deepEqual((await store.open(threadY).list()).map((entry) => entry.path), ['data.csv']);
  });

  test(`${name}: unsafe paths are refused`, async () => {
    const workspace = (await makeStore()).open(threadX);
    for (const path of ['../x.csv', '../../etc/passwd', '/etc/passwd', 'a/../../b', 'bad\u0000name', 'a\\b', '']) {
      await assert.rejects(workspace.write(path, 'x'), UnsafePathError, path);
      await assert.rejects(workspace.read(path), UnsafePathError, path);
    }
  });

  test(`${name}: state is versioned and a stale writer gets a conflict`, async () => {
    const workspace = (await makeStore()).open(threadX);
    assert.equal(await workspace.readState('messages'), undefined);
    const first = await workspace.writeState('messages', [{ role: 'user', content: 'hi' }], null);
    await assert.rejects(workspace.writeState('messages', [], null), StateConflictError);
    const second = await workspace.writeState('messages', [{ role: 'user', content: 'again' }], first);
    assert.notEqual(first, second);
    await assert.rejects(workspace.writeState('messages', [], first), StateConflictError);
    const state = await workspace.readState<{ content: string }[]>('messages');
    assert.equal(state?.value[0]?.content, 'again');
    assert.equal(state?.version, second);
    // State is not a workspace file: the code never sees it.
    assert.ok(!(await workspace.list({ includeInternal: true })).some((entry) => entry.path.includes('messages')));
  });

  test(`${name}: retention removes only old threads`, async () => {
    const store = await makeStore();
    await store.open(threadX).write('old.csv', 'x');
    await store.open(threadX).writeState('messages', [], null);
    const { removedThreads: none } = await store.removeOlderThan(Date.now() - 60_000);
    assert.deepEqual(none, []);
    const { removedThreads } = await store.removeOlderThan(Date.now() + 60_000);
    assert.ok(removedThreads.includes('T1/C1/1700000000.000100'));
    assert.deepEqual(await store.open(threadX).list(), []);
    assert.equal(await store.open(threadX).readState('messages'), undefined);
  });
}

export async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
