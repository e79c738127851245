import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Storage } from '@google-cloud/storage';
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
after(async () => {
  await contractFake.close();
  assert.deepEqual(contractFake.unexpected, []);
});
workspaceContract('GcsWorkspace', async () => {
  contractFake.bucket(BUCKET).clear();
  const storage = new Storage({ apiEndpoint: contractUrl, projectId: 'test-project' });
  return new GcsWorkspaceStore({ storage, bucket: BUCKET, logger: silentLogger, uploadChunkBytes: CHUNK });
});

describe('GcsWorkspace against fake GCS', () => {
  const fake = new FakeGcs([BUCKET]);
  let store: GcsWorkspaceStore;

  before(async () => {
    const { url } = await fake.start();
    const storage = new Storage({ apiEndpoint: url, projectId: 'test-project' });
    store = new GcsWorkspaceStore({ storage, bucket: BUCKET, logger: silentLogger, uploadChunkBytes: CHUNK });
  });
  after(async () => {
    await fake.close();
    assert.deepEqual(fake.unexpected, [], 'the fake saw requests it does not understand');
  });
  beforeEach(() => {
    assert.deepEqual(fake.unexpected, [], 'the fake saw requests it does not understand');
    fake.bucket(BUCKET).clear();
    fake.requests.length = 0;
    fake.pageSize = 1000;
  });

  it('places a thread under workspaces/<team>/<channel>/<ts>/ and round-trips strings and buffers', async () => {
    const workspace = store.open(threadA);
    assert.deepEqual(workspace.location, { kind: 'gcs', bucket: BUCKET, prefix: 'workspaces/T1/C1/1700000000.000100/' });
    const entry = await workspace.write('notes/hello.txt', 'こんにちは');
    assert.equal(entry.path, 'notes/hello.txt');
    assert.equal(entry.size, Buffer.byteLength('こんにちは'));
    await workspace.write('./data.bin', Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(fake.names(BUCKET), ['workspaces/T1/C1/1700000000.000100/data.bin', 'workspaces/T1/C1/1700000000.000100/notes/hello.txt']);
    assert.equal((await readAll(await workspace.read('notes/hello.txt'))).toString('utf8'), 'こんにちは');
    assert.deepEqual(await readAll(await workspace.read('data.bin')), Buffer.from([0, 1, 2, 255]));
    const stat = await workspace.stat('data.bin');
    assert.equal(stat?.size, 4);
    assert.ok(stat !== undefined && Math.abs(stat.modifiedMs - fake.bucket(BUCKET).get('workspaces/T1/C1/1700000000.000100/data.bin')!.updated.getTime()) < 1);
    assert.equal(await workspace.stat('missing.txt'), undefined);
    await assert.rejects(workspace.read('missing.txt'), FileNotFoundError);
    await assert.rejects(workspace.write('../escape.txt', 'x'), UnsafePathError);
    await assert.rejects(workspace.read('/etc/passwd'), UnsafePathError);
  });

  it('streams a multi-megabyte file up in a chunked resumable upload and back intact', async () => {
    const workspace = store.open(threadA);
    const data = patterned(5 * 1024 * 1024 + 123);
    const pieces = Array.from({ length: Math.ceil(data.length / 65536) }, (_, index) => data.subarray(index * 65536, (index + 1) * 65536));
    const entry = await workspace.write('big/data.bin', Readable.from(pieces));
    assert.equal(entry.size, data.length);
    const uploads = fake.requests.filter((request) => request.path.startsWith('/upload/'));
    assert.equal(uploads[0]?.query.uploadType, 'resumable');
    assert.ok(uploads.filter((request) => request.method === 'PUT').length >= 20, 'expected one PUT per 256 KiB chunk');
    assert.ok(fake.bucket(BUCKET).get('workspaces/T1/C1/1700000000.000100/big/data.bin')!.data.equals(data));
    assert.ok((await readAll(await workspace.read('big/data.bin'))).equals(data));
  });

  it('sends a short stream (including an empty one) in a single request', async () => {
    const workspace = store.open(threadA);
    await workspace.write('small.csv', Readable.from([Buffer.from('a,b\n'), Buffer.from('1,2\n')]));
    await workspace.write('empty.txt', Readable.from([]));
    assert.deepEqual(
      fake.requests.filter((request) => request.path.startsWith('/upload/')).map((request) => request.query.uploadType),
      ['multipart', 'multipart'],
    );
    assert.equal((await readAll(await workspace.read('small.csv'))).toString(), 'a,b\n1,2\n');
    assert.equal((await workspace.stat('empty.txt'))?.size, 0);
  });

  it('leaves no object and keeps the old file when a streamed write fails midway', async () => {
    const workspace = store.open(threadA);
    await workspace.write('report.bin', 'old content');
    async function* failing(): AsyncGenerator<Buffer> {
      for (let index = 0; index < 12; index++) yield patterned(65536); // 768 KiB: past the first chunk
      throw new Error('source broke');
    }
    await assert.rejects(workspace.write('report.bin', Readable.from(failing())), /source broke/);
    await assert.rejects(workspace.write('fresh.bin', Readable.from(failing())), /source broke/);
    assert.ok(fake.requests.some((request) => request.method === 'PUT' && request.status === 308), 'chunks were sent before the failure');
    assert.equal((await readAll(await workspace.read('report.bin'))).toString(), 'old content');
    assert.equal(await workspace.stat('fresh.bin'), undefined);
    assert.deepEqual(fake.names(BUCKET), ['workspaces/T1/C1/1700000000.000100/report.bin']);
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

    assert.deepEqual((await workspaceA.list()).map((entry) => [entry.path, entry.size]), [['charts/plot.png', 3], ['sales.csv', 1]]);
    assert.deepEqual((await workspaceB.list()).map((entry) => [entry.path, entry.size]), [['sales.csv', 2]]);
    assert.deepEqual((await workspaceA.list({ includeInternal: true })).map((entry) => entry.path), ['.oi/steps/s1/request.json', 'charts/plot.png', 'sales.csv']);
    assert.deepEqual((await prefixOf1Dot2.list()).map((entry) => entry.path), ['mine.txt']);
    assert.equal(await workspaceA.stat('link'), undefined);
    await assert.rejects(workspaceA.read('link'), FileNotFoundError);
    assert.ok(fake.requests.some((request) => request.query.pageToken !== undefined), 'listing went through several pages');
  });

  it('deletes files, and deleting a missing file is not an error', async () => {
    const workspace = store.open(threadA);
    await workspace.write('a.txt', 'a');
    await workspace.delete('a.txt');
    await workspace.delete('a.txt');
    assert.deepEqual(await workspace.list(), []);
  });

  it('keeps state out of the workspace and refuses stale or duplicate creating writes', async () => {
    const workspace = store.open(threadA);
    const other = store.open(threadA); // a second controller instance looking at the same thread
    assert.equal(await workspace.readState('messages'), undefined);
    const first = await workspace.writeState('messages', [{ role: 'user', content: 'hi' }], null);
    await assert.rejects(other.writeState('messages', [{ role: 'user', content: 'other' }], null), StateConflictError);
    assert.deepEqual(fake.names(BUCKET), ['threads/T1/C1/1700000000.000100/messages.json']);
    assert.deepEqual(await workspace.list({ includeInternal: true }), []);

    const seen = await other.readState<unknown[]>('messages');
    assert.deepEqual(seen, { value: [{ role: 'user', content: 'hi' }], version: first });
    const second = await workspace.writeState('messages', [1, 2], first);
    assert.notEqual(second, first);
    await assert.rejects(other.writeState('messages', ['lost update'], first), StateConflictError);
    await assert.rejects(other.writeState('messages', ['bogus'], 'local-3'), StateConflictError);
    assert.deepEqual(await other.readState('messages'), { value: [1, 2], version: second });
    await assert.rejects(workspace.writeState('../x', 1, null), UnsafePathError);
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
    assert.deepEqual(await store.removeOlderThan(cutOff, { dryRun: true }), { removedThreads: ['T1/C1/1700000000.000100'] });
    assert.deepEqual(fake.names(BUCKET), everything, 'a dry run removes nothing');
    const { removedThreads } = await store.removeOlderThan(cutOff);
    assert.deepEqual(removedThreads, ['T1/C1/1700000000.000100']);
    assert.deepEqual(fake.names(BUCKET), [
      'threads/T1/C1/1700000000.000200/messages.json',
      'workspaces/T1/C1/1700000000.000200/old-file-but-active-thread.csv',
    ]);
  });
});
