import { Readable } from 'node:stream';
import { assert, afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Storage } from '@google-cloud/storage';
import { createStorage } from '../controller/gcp/gcp-clients.js';
import { silentLogger } from '../controller/logger.js';
import { GcsWorkspaceStore } from '../controller/workspace/gcs-workspace.js';
import { FileNotFoundError, StateConflictError, UnsafePathError } from '../controller/workspace/workspace.js';
import { FakeGcs } from './fakes/fake-gcs.js';
import { workspaceContract } from './helpers/workspace-contract.js';

// The real @google-cloud/storage client against the project's GCS JSON API fake on 127.0.0.1.

const BUCKET = 'oi-test';
const CHUNK = 256 * 1024;
const threadA = { team: 'T1', channel: 'C1', threadTs: '1700000000.000100' };
const threadB = { team: 'T1', channel: 'C1', threadTs: '1700000000.000200' };

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function patterned(bytes: number): Buffer {
  const data = Buffer.alloc(bytes);
  for (let index = 0; index < bytes; index++) data[index] = (index * 31 + (index >> 11)) & 0xff;
  return data;
}

// The behaviour both stores share (test/helpers/workspace-contract.ts), against a fresh bucket each time.
const contractFake = new FakeGcs([BUCKET]);
const { url: contractUrl } = await contractFake.start();
afterAll(async () => {
  await contractFake.close();
  expect(contractFake.unexpected).toStrictEqual([]);
});
workspaceContract('GcsWorkspace', async () => {
  contractFake.bucket(BUCKET).clear();
  const storage = new Storage({ apiEndpoint: contractUrl, projectId: 'test-project' });
  return new GcsWorkspaceStore({ storage, bucket: BUCKET, logger: silentLogger, uploadChunkBytes: CHUNK });
});

describe('GcsWorkspace against fake GCS', () => {
  const fake = new FakeGcs([BUCKET]);
  let store: GcsWorkspaceStore;

  beforeAll(async () => {
    const { url } = await fake.start();
    const storage = new Storage({ apiEndpoint: url, projectId: 'test-project' });
    store = new GcsWorkspaceStore({ storage, bucket: BUCKET, logger: silentLogger, uploadChunkBytes: CHUNK });
  });
  afterAll(async () => {
    await fake.close();
    expect(fake.unexpected, 'the fake saw requests it does not understand').toStrictEqual([]);
  });
  beforeEach(() => {
    expect(fake.unexpected, 'the fake saw requests it does not understand').toStrictEqual([]);
    fake.bucket(BUCKET).clear();
    fake.requests.length = 0;
    fake.pageSize = 1000;
  });

  it('places a thread under workspaces/<team>/<channel>/<ts>/ and round-trips strings and buffers', async () => {
    const workspace = store.open(threadA);
    expect(workspace.location).toStrictEqual({ kind: 'gcs', bucket: BUCKET, prefix: 'workspaces/T1/C1/1700000000.000100/' });
    const entry = await workspace.write('notes/hello.txt', 'こんにちは');
    expect(entry.path).toBe('notes/hello.txt');
    expect(entry.size).toBe(Buffer.byteLength('こんにちは'));
    await workspace.write('./data.bin', Buffer.from([0, 1, 2, 255]));
    expect(fake.names(BUCKET)).toStrictEqual(['workspaces/T1/C1/1700000000.000100/data.bin', 'workspaces/T1/C1/1700000000.000100/notes/hello.txt']);
    expect((await readAll(await workspace.read('notes/hello.txt'))).toString('utf8')).toBe('こんにちは');
    expect(await readAll(await workspace.read('data.bin'))).toStrictEqual(Buffer.from([0, 1, 2, 255]));
    const stat = await workspace.stat('data.bin');
    expect(stat?.size).toBe(4);
    assert(stat !== undefined, 'data.bin has a stat');
    expect(Math.abs(stat.modifiedMs - fake.bucket(BUCKET).get('workspaces/T1/C1/1700000000.000100/data.bin')!.updated.getTime())).toBeLessThan(1);
    expect(await workspace.stat('missing.txt')).toBeUndefined();
    await expect(workspace.read('missing.txt')).rejects.toThrow(FileNotFoundError);
    await expect(workspace.write('../escape.txt', 'x')).rejects.toThrow(UnsafePathError);
    await expect(workspace.read('/etc/passwd')).rejects.toThrow(UnsafePathError);
  });

  it('lists and reads back a file whose name code wrote with control characters (gcsfuse lets it), never a traversal', async () => {
    const workspace = store.open(threadA);
    const prefix = 'workspaces/T1/C1/1700000000.000100/';
    fake.put(BUCKET, `${prefix}tab\there\u0007.csv`, Buffer.from('odd'));
    fake.put(BUCKET, `${prefix}a/../../escape.txt`, Buffer.from('no'));
    expect((await workspace.list()).map((entry) => entry.path)).toStrictEqual(['tab\there\u0007.csv']);
    expect((await readAll(await workspace.read('tab\there\u0007.csv'))).toString()).toBe('odd');
    await expect(workspace.write('tab\tnew.csv', 'x'), 'the bot itself never writes such a name').rejects.toThrow(UnsafePathError);
  });

  it('streams a multi-megabyte file up in a chunked resumable upload and back intact', async () => {
    const workspace = store.open(threadA);
    const data = patterned(5 * 1024 * 1024 + 123);
    const pieces = Array.from({ length: Math.ceil(data.length / 65536) }, (_, index) => data.subarray(index * 65536, (index + 1) * 65536));
    const entry = await workspace.write('big/data.bin', Readable.from(pieces));
    expect(entry.size).toBe(data.length);
    const uploads = fake.requests.filter((request) => request.path.startsWith('/upload/'));
    expect(uploads[0]?.query.uploadType).toBe('resumable');
    expect(uploads.filter((request) => request.method === 'PUT').length, 'expected one PUT per 256 KiB chunk').toBeGreaterThanOrEqual(20);
    expect(fake.bucket(BUCKET).get('workspaces/T1/C1/1700000000.000100/big/data.bin')!.data.equals(data), 'the stored bytes').toBe(true);
    expect((await readAll(await workspace.read('big/data.bin'))).equals(data), 'the bytes read back').toBe(true);
  });

  it('sends a short stream (including an empty one) in a single request', async () => {
    const workspace = store.open(threadA);
    await workspace.write('small.csv', Readable.from([Buffer.from('a,b\n'), Buffer.from('1,2\n')]));
    await workspace.write('empty.txt', Readable.from([]));
    expect(fake.requests.filter((request) => request.path.startsWith('/upload/')).map((request) => request.query.uploadType)).toStrictEqual(['multipart', 'multipart']);
    expect((await readAll(await workspace.read('small.csv'))).toString()).toBe('a,b\n1,2\n');
    expect((await workspace.stat('empty.txt'))?.size).toBe(0);
  });

  it('leaves no object and keeps the old file when a streamed write fails midway', async () => {
    const workspace = store.open(threadA);
    await workspace.write('report.bin', 'old content');
    async function* failing(): AsyncGenerator<Buffer> {
      for (let index = 0; index < 12; index++) yield patterned(65536); // 768 KiB: past the first chunk
      throw new Error('source broke');
    }
    await expect(workspace.write('report.bin', Readable.from(failing()))).rejects.toThrow(/source broke/);
    await expect(workspace.write('fresh.bin', Readable.from(failing()))).rejects.toThrow(/source broke/);
    expect(fake.requests, 'chunks were sent before the failure').toContainEqual(expect.objectContaining({ method: 'PUT', status: 308 }));
    expect((await readAll(await workspace.read('report.bin'))).toString()).toBe('old content');
    expect(await workspace.stat('fresh.bin')).toBeUndefined();
    expect(fake.names(BUCKET)).toStrictEqual(['workspaces/T1/C1/1700000000.000100/report.bin']);
  });

  it('lists only its own thread, sorted, hiding .oi/, directory placeholders and symlinks, across pages', async () => {
    fake.pageSize = 2;
    const workspaceA = store.open(threadA);
    const workspaceB = store.open(threadB);
    const prefixOf1Dot2 = store.open({ team: 'T1', channel: 'C1', threadTs: '1.2' });
    const prefixOf1Dot23 = store.open({ team: 'T1', channel: 'C1', threadTs: '1.23' });
    await workspaceA.write('sales.csv', 'a');
    await workspaceB.write('sales.csv', 'bb');
    await workspaceA.write('charts/plot.png', 'png');
    await workspaceA.write('.oi/steps/s1/request.json', '{}');
    await prefixOf1Dot2.write('mine.txt', '1');
    await prefixOf1Dot23.write('other.txt', '2');
    fake.put(BUCKET, 'workspaces/T1/C1/1700000000.000100/charts/', Buffer.alloc(0));
    fake.put(BUCKET, 'workspaces/T1/C1/1700000000.000100/link', Buffer.alloc(0), { metadata: { gcsfuse_symlink_target: '/etc/passwd' } });
    await workspaceA.writeState('messages', [], null);

    expect((await workspaceA.list()).map((entry) => [entry.path, entry.size])).toStrictEqual([['charts/plot.png', 3], ['sales.csv', 1]]);
    expect((await workspaceB.list()).map((entry) => [entry.path, entry.size])).toStrictEqual([['sales.csv', 2]]);
    expect((await workspaceA.list({ includeInternal: true })).map((entry) => entry.path)).toStrictEqual(['.oi/steps/s1/request.json', 'charts/plot.png', 'sales.csv']);
    expect((await prefixOf1Dot2.list()).map((entry) => entry.path)).toStrictEqual(['mine.txt']);
    expect(await workspaceA.stat('link')).toBeUndefined();
    await expect(workspaceA.read('link')).rejects.toThrow(FileNotFoundError);
    expect(fake.requests.map((request) => request.query.pageToken).filter((token) => token !== undefined).length, 'listing went through several pages').toBeGreaterThan(0);
  });

  it('deletes files, and deleting a missing file is not an error', async () => {
    const workspace = store.open(threadA);
    await workspace.write('a.txt', 'a');
    await workspace.delete('a.txt');
    await workspace.delete('a.txt');
    expect(await workspace.list()).toStrictEqual([]);
  });

  it('keeps state out of the workspace and refuses stale or duplicate creating writes', async () => {
    const workspace = store.open(threadA);
    const other = store.open(threadA); // a second controller instance looking at the same thread
    expect(await workspace.readState('messages')).toBeUndefined();
    const first = await workspace.writeState('messages', [{ role: 'user', content: 'hi' }], null);
    await expect(other.writeState('messages', [{ role: 'user', content: 'other' }], null)).rejects.toThrow(StateConflictError);
    expect(fake.names(BUCKET)).toStrictEqual(['threads/T1/C1/1700000000.000100/messages.json']);
    expect(await workspace.list({ includeInternal: true })).toStrictEqual([]);

    const seen = await other.readState<unknown[]>('messages');
    expect(seen).toStrictEqual({ value: [{ role: 'user', content: 'hi' }], version: first });
    const second = await workspace.writeState('messages', [1, 2], first);
    expect(second).not.toBe(first);
    await expect(other.writeState('messages', ['lost update'], first)).rejects.toThrow(StateConflictError);
    await expect(other.writeState('messages', ['bogus'], 'local-3')).rejects.toThrow(StateConflictError);
    expect(await other.readState('messages')).toStrictEqual({ value: [1, 2], version: second });
    await expect(workspace.writeState('../x', 1, null)).rejects.toThrow(UnsafePathError);
  });

  it('removes threads whose newest object is older than the cut-off, workspace and history both', async () => {
    const old = store.open(threadA);
    const recent = store.open(threadB);
    await old.write('old.csv', 'x');
    await old.writeState('messages', [], null);
    await recent.write('old-file-but-active-thread.csv', 'y');
    await recent.writeState('messages', [], null);
    const cutOff = Date.now() - 24 * 3600_000;
    for (const [name, object] of fake.bucket(BUCKET)) {
      if (name.includes('000100') || name.endsWith('.csv')) object.updated = new Date(cutOff - 3600_000);
    }
    const everything = fake.names(BUCKET);
    expect(await store.removeOlderThan(cutOff, { dryRun: true })).toStrictEqual({ removedThreads: ['T1/C1/1700000000.000100'] });
    expect(fake.names(BUCKET), 'a dry run removes nothing').toStrictEqual(everything);
    const { removedThreads } = await store.removeOlderThan(cutOff);
    expect(removedThreads).toStrictEqual(['T1/C1/1700000000.000100']);
    expect(fake.names(BUCKET)).toStrictEqual([
      'threads/T1/C1/1700000000.000200/messages.json',
      'workspaces/T1/C1/1700000000.000200/old-file-but-active-thread.csv',
    ]);
  });
});

describe('GcsWorkspace when GCS answers 429 or 503', () => {
  const fake = new FakeGcs([BUCKET]);
  let url: string;
  beforeAll(async () => {
    ({ url } = await fake.start());
  });
  afterAll(() => fake.close());
  beforeEach(() => {
    fake.clearInjections();
    fake.bucket(BUCKET).clear();
    fake.requests.length = 0;
  });
  /** A store on the Storage client the controller builds (createStorage): the library's default retry rules. */
  const productionStore = () => new GcsWorkspaceStore({ storage: createStorage(url, 'test-project'), bucket: BUCKET, logger: silentLogger });
  const uploadStatuses = () => fake.requests.filter((request) => request.path.startsWith('/upload/')).map((request) => request.status);

  it('a history write survives one injected 503: the client retries a write that carries a precondition', async () => {
    const workspace = productionStore().open(threadA);
    fake.injectFailures(503, 1);
    const version = await workspace.writeState('messages', [{ role: 'user', content: 'kept' }], null);
    expect(uploadStatuses()).toStrictEqual([503, 200]);
    expect(await workspace.readState('messages')).toStrictEqual({ value: [{ role: 'user', content: 'kept' }], version });
  });

  it('a 429 storm surfaces as an error once the client has used its retries', async () => {
    // The library's rules (RetryConditional, maxRetries 3); only the back-off is capped at 1 s to keep this short.
    const storage = new Storage({ apiEndpoint: url, projectId: 'test-project', retryOptions: { maxRetryDelay: 1 } });
    const workspace = new GcsWorkspaceStore({ storage, bucket: BUCKET, logger: silentLogger }).open(threadA);
    fake.injectFailures(429, Infinity);
    await expect(workspace.writeState('messages', [], null)).rejects.toMatchObject({ code: 429 });
    expect(uploadStatuses(), 'one attempt and three retries').toStrictEqual([429, 429, 429, 429]);
    expect(fake.names(BUCKET)).toStrictEqual([]);
  });

  // The controller's Storage client retries every request (createStorage: RetryAlways). Under the library's default
  // RetryConditional a write without a precondition was not retried on a 503, and the library then left retries
  // switched off on the shared client, so a later read failed on its first 503 too.
  it('a workspace file write survives one injected 503', async () => {
    const workspace = productionStore().open(threadA);
    fake.injectFailures(503, 1);
    await workspace.write('data.csv', 'a,b\n');
    expect(uploadStatuses()).toStrictEqual([503, 200]);
  });

  it('after a file write met a 503 the client still retries reads', async () => {
    const workspace = productionStore().open(threadA);
    await workspace.write('data.csv', 'a,b\n');
    fake.injectFailures(503, 1);
    await workspace.write('other.csv', 'c\n').catch(() => {});
    fake.injectFailures(503, 1);
    expect((await workspace.list()).map((entry) => entry.path)).toContain('data.csv');
  });

  it('a file delete (no precondition either) survives one injected 503, and reads after it are still retried', async () => {
    const workspace = productionStore().open(threadA);
    await workspace.write('data.csv', 'a,b\n');
    await workspace.write('other.csv', 'c\n');
    fake.requests.length = 0;
    fake.injectFailures(503, 1, (request) => request.method === 'DELETE');
    await workspace.delete('other.csv');
    expect(fake.requests.filter((request) => request.method === 'DELETE').map((request) => request.status)).toStrictEqual([503, 204]);
    fake.injectFailures(503, 1);
    expect((await workspace.list()).map((entry) => entry.path)).toStrictEqual(['data.csv']);
  });
});
