import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Storage } from '@google-cloud/storage';
import { afterAll, beforeAll } from 'vitest';
import { silentLogger } from '../../controller/logger.js';
import { GcsWorkspaceStore } from '../../controller/workspace/gcs-workspace.js';
import { LocalWorkspaceStore } from '../../controller/workspace/local-workspace.js';
import type { RecordStore } from '../../controller/workspace/records.js';
import { FakeGcs } from '../fakes/fake-gcs.js';

export type RecordBackend = [name: string, makeRecords: () => Promise<RecordStore>];

/**
 * The coordination records (workspace/records.ts) on both stores, for `describe.each`: each call makes a fresh
 * store, a local directory or the cleared `bucket` of a fake GCS started for the file (registered as the file's
 * hooks). A GCS store gets a client of its own, since the library's retry switch is per client; `gcs` is the
 * fake, for the tests that lose its answers.
 */
export function recordBackends(bucket: string): { gcs: FakeGcs; onGcs: RecordBackend; both: RecordBackend[] } {
  const gcs = new FakeGcs([bucket]);
  beforeAll(async () => {
    await gcs.start();
  });
  afterAll(() => gcs.close());
  const local: RecordBackend = ['local', async () => new LocalWorkspaceStore(await mkdtemp(join(tmpdir(), `oi-${bucket}-`))).records];
  const onGcs: RecordBackend = [
    'gcs',
    async () => {
      gcs.bucket(bucket).clear();
      const storage = new Storage({ apiEndpoint: gcs.url, projectId: 'test-project', retryOptions: { maxRetryDelay: 1 } });
      return new GcsWorkspaceStore({ storage, bucket, logger: silentLogger }).records;
    },
  ];
  return { gcs, onGcs, both: [local, onGcs] };
}
