import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Storage } from '@google-cloud/storage';
import { appendHistory, loadHistory } from '../controller/agent/history.js';
import { silentLogger } from '../controller/logger.js';
import { parseRetentionArguments, retentionDays, RetentionUsageError } from '../controller/retention/retention.js';
import { GcsWorkspaceStore } from '../controller/workspace/gcs-workspace.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import type { WorkspaceStore } from '../controller/workspace/workspace.js';
import { FakeGcs } from './fakes/fake-gcs.js';

// `npm run retention` as an operator runs it: a real child process, with no Slack or OpenAI variable.

const ROOT = join(import.meta.dirname, '..');
const DAY_MS = 24 * 60 * 60 * 1000;
const oldThread = { team: 'T1', channel: 'C1', threadTs: '1600000000.000100' };
const freshThread = { team: 'T1', channel: 'C1', threadTs: '1700000000.000200' };
const OLD_PATH = 'T1/C1/1600000000.000100';
const FRESH_PATH = 'T1/C1/1700000000.000200';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI asynchronously (a fake server in this process must keep answering meanwhile). */
function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'controller/retention/retention-cli.ts', ...args], {
      cwd: ROOT,
      // Only what a process needs to run: in particular no SLACK_* and no OPENAI_* variable.
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function jsonLines(stdout: string): Array<Record<string, unknown>> {
  return stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** A thread with files, internal step files and history, as the bot leaves it. */
async function makeThread(store: WorkspaceStore, key: typeof oldThread): Promise<void> {
  const workspace = store.open(key);
  await workspace.write('sales.csv', 'a,b\n1,2\n');
  await workspace.write('charts/figure_1.png', Buffer.from([0x89, 0x50, 0x4e, 0x47]));
  await workspace.write('.oi/steps/s1/result.json', '{}');
  await appendHistory(workspace, [{ role: 'user', content: 'hello' }, { role: 'assistant', content: 'hi' }]);
}

/** Sets the modification time of a folder and everything under it. */
async function age(path: string, when: Date): Promise<void> {
  for (const child of await readdir(path)) {
    const full = join(path, child);
    if ((await lstat(full)).isDirectory()) await age(full, when);
    else await utimes(full, when, when);
  }
  await utimes(path, when, when);
}

describe('retention command, local storage', () => {
  let dataDir: string;
  let store: LocalWorkspaceStore;

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'retention-test-'));
    store = new LocalWorkspaceStore(dataDir);
    await makeThread(store, oldThread);
    await makeThread(store, freshThread);
    const monthAgo = new Date(Date.now() - 30 * DAY_MS);
    await age(join(dataDir, 'workspaces', OLD_PATH), monthAgo);
    await age(join(dataDir, 'threads', OLD_PATH), monthAgo);
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('removes the old thread (files and history) and keeps the fresh one', async () => {
    const result = await runCli(['--days', '7'], { DATA_DIR: dataDir });
    expect(result.code, result.stderr).toBe(0);
    const lines = jsonLines(result.stdout);
    expect(lines[0]).toStrictEqual({ action: 'removed', thread: OLD_PATH });
    expect(lines[1]!.action).toBe('summary');
    expect(lines[1]!.removed).toBe(1);
    expect(lines).toHaveLength(2);

    expect(existsSync(join(dataDir, 'workspaces', OLD_PATH))).toBe(false);
    expect(existsSync(join(dataDir, 'threads', OLD_PATH))).toBe(false);
    expect(await loadHistory(store.open(oldThread))).toStrictEqual([]);
    expect(await store.open(oldThread).list({ includeInternal: true })).toStrictEqual([]);

    const fresh = store.open(freshThread);
    expect((await fresh.list()).map((entry) => entry.path)).toStrictEqual(['charts/figure_1.png', 'sales.csv']);
    expect(await loadHistory(fresh)).toHaveLength(2);
  });

  it('takes the age from RETENTION_DAYS, and a longer age keeps both threads', async () => {
    const keep = await runCli([], { DATA_DIR: dataDir, RETENTION_DAYS: '60' });
    expect(keep.code, keep.stderr).toBe(0);
    expect(jsonLines(keep.stdout).map((line) => line.action)).toStrictEqual(['summary']);
    expect(existsSync(join(dataDir, 'threads', OLD_PATH, 'messages.json'))).toBe(true);

    // --days wins over RETENTION_DAYS.
    const remove = await runCli(['--days=7'], { DATA_DIR: dataDir, RETENTION_DAYS: '60' });
    expect(remove.code, remove.stderr).toBe(0);
    expect(existsSync(join(dataDir, 'threads', OLD_PATH))).toBe(false);
  });

  it('de-duplication records expire after a day, whatever --days says; a dry run only counts them', async () => {
    await store.records.create('events/EvOLD', { writeId: 'old' });
    await store.records.create('messages/T1/C1/1600000000.000100', { writeId: 'old message' });
    await store.records.create('events/EvNEW', { writeId: 'new' });
    const twoDaysAgo = new Date(Date.now() - 2 * DAY_MS);
    await utimes(join(dataDir, 'coordination', 'events', 'EvOLD.json'), twoDaysAgo, twoDaysAgo);
    await utimes(join(dataDir, 'coordination', 'messages', 'T1', 'C1', '1600000000.000100.json'), twoDaysAgo, twoDaysAgo);
    const dry = await runCli(['--days', '60', '--dry-run'], { DATA_DIR: dataDir });
    expect(jsonLines(dry.stdout).at(-1)!.wouldExpireRecords).toBe(2);
    expect((await store.records.list('events/')).map((record) => record.name)).toStrictEqual(['events/EvNEW', 'events/EvOLD']);
    const result = await runCli(['--days', '60'], { DATA_DIR: dataDir });
    expect(result.code, result.stderr).toBe(0);
    expect(jsonLines(result.stdout).at(-1)).toMatchObject({ action: 'summary', removed: 0, expiredRecords: 2 });
    expect((await store.records.list('events/')).map((record) => record.name)).toStrictEqual(['events/EvNEW']);
    expect(await store.records.list('messages/')).toStrictEqual([]);
  });

  it('a dry run lists the old thread and removes nothing', async () => {
    const result = await runCli(['--days', '7', '--dry-run'], { DATA_DIR: dataDir });
    expect(result.code, result.stderr).toBe(0);
    const lines = jsonLines(result.stdout);
    expect(lines[0]).toStrictEqual({ action: 'would_remove', thread: OLD_PATH });
    expect(lines[1]!.dryRun).toBe(true);
    expect(lines[1]!.wouldRemove).toBe(1);
    expect(await store.open(oldThread).list({ includeInternal: true })).toHaveLength(3);
    expect(await loadHistory(store.open(oldThread))).toHaveLength(2);
  });

  it('without RETENTION_DAYS or --days it exits non-zero with a clear message and removes nothing', async () => {
    const result = await runCli([], { DATA_DIR: dataDir });
    expect(result.code).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/set RETENTION_DAYS or pass --days N/);
    expect(existsSync(join(dataDir, 'threads', OLD_PATH, 'messages.json'))).toBe(true);

    const bad = await runCli(['--days', 'soon'], { DATA_DIR: dataDir });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--days needs a whole number of days/);
  });
});

describe('retention command, GCS storage (fake GCS on 127.0.0.1)', () => {
  const BUCKET = 'retention-test';
  const fake = new FakeGcs([BUCKET]);
  let env: Record<string, string>;
  let store: GcsWorkspaceStore;

  beforeEach(async () => {
    if (env === undefined) {
      const { url } = await fake.start();
      env = { STORAGE_BACKEND: 'gcs', GCS_BUCKET: BUCKET, GCS_API_ENDPOINT: url };
      store = new GcsWorkspaceStore({ storage: new Storage({ apiEndpoint: url, projectId: 'test' }), bucket: BUCKET, logger: silentLogger });
    }
    fake.bucket(BUCKET).clear();
    await makeThread(store, oldThread);
    await makeThread(store, freshThread);
    for (const [name, object] of fake.bucket(BUCKET)) {
      if (name.includes(OLD_PATH)) object.updated = new Date(Date.now() - 30 * DAY_MS);
    }
  });
  afterAll(async () => {
    await fake.close();
    expect(fake.unexpected, 'the fake saw requests it does not understand').toStrictEqual([]);
  });

  const threadsIn = () => [...new Set(fake.names(BUCKET).map((name) => name.split('/').slice(1, 4).join('/')))].sort();

  it('removes the old thread and keeps the fresh one', async () => {
    const result = await runCli(['--days', '7'], env);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonLines(result.stdout)[0]).toStrictEqual({ action: 'removed', thread: OLD_PATH });
    expect(threadsIn()).toStrictEqual([FRESH_PATH]);
  });

  it('de-duplication records older than a day go; a lease record goes with the threads of its age', async () => {
    await store.records.create('events/EvOLD', { writeId: 'old' });
    await store.records.create('events/EvNEW', { writeId: 'new' });
    await store.records.create(`leases/${OLD_PATH}`, { writeId: 'left behind' });
    fake.bucket(BUCKET).get('coordination/events/EvOLD.json')!.updated = new Date(Date.now() - 2 * DAY_MS);
    fake.bucket(BUCKET).get(`coordination/leases/${OLD_PATH}.json`)!.updated = new Date(Date.now() - 30 * DAY_MS);
    const result = await runCli(['--days', '7'], env);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonLines(result.stdout).at(-1)).toMatchObject({ action: 'summary', removed: 1, expiredRecords: 2 });
    expect(fake.names(BUCKET, 'coordination/')).toStrictEqual(['coordination/events/EvNEW.json']);
  });

  it('a dry run removes nothing', async () => {
    const before = fake.names(BUCKET);
    const result = await runCli(['--days', '7', '--dry-run'], env);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonLines(result.stdout)[0]).toStrictEqual({ action: 'would_remove', thread: OLD_PATH });
    expect(fake.names(BUCKET)).toStrictEqual(before);
    expect(threadsIn()).toStrictEqual([OLD_PATH, FRESH_PATH]);
  });
});

describe('retention arguments', () => {
  it('parses --days, --days=, --dry-run and refuses the rest', () => {
    expect(parseRetentionArguments(['--days', '7', '--dry-run'])).toStrictEqual({ days: 7, dryRun: true, help: false });
    expect(parseRetentionArguments(['--days=30'])).toStrictEqual({ days: 30, dryRun: false, help: false });
    expect(() => parseRetentionArguments(['--days'])).toThrow(RetentionUsageError);
    expect(() => parseRetentionArguments(['--days', '0'])).toThrow(RetentionUsageError);
    expect(() => parseRetentionArguments(['--days', '1.5'])).toThrow(RetentionUsageError);
    expect(() => parseRetentionArguments(['--force'])).toThrow(/unknown argument "--force"/);
    expect(retentionDays(3, 60)).toBe(3);
    expect(retentionDays(undefined, 60)).toBe(60);
    expect(() => retentionDays(undefined, undefined)).toThrow(/RETENTION_DAYS/);
  });
});
