/**
 * The coordination records (controller/workspace/records.ts) on both backends: create-if-absent, compare-and-swap
 * and conditional delete hold under concurrent writers, and on GCS a lost answer (the client retries and meets its
 * own write with a 412) is recognised, never reported as a conflict.
 */
import { describe, expect, test } from 'vitest';
import { recordBackends } from './helpers/record-backends.js';

let counter = 0;
const { gcs, both: backends, onGcs } = recordBackends('records');

const unique = (label: string) => ({ label, writeId: `${label}-${++counter}` });

describe.each(backends)('RecordStore (%s)', (_name, makeStore) => {
  test('create-if-absent, compare-and-swap, conditional delete', async () => {
    const records = await makeStore();
    const name = 'leases/T1/C1/1700000000.000100';
    expect(await records.read(name)).toBeUndefined();
    const first = await records.create(name, unique('first'));
    expect(first).toBeDefined();
    expect(await records.create(name, unique('second')), 'exists already').toBeUndefined();
    expect(await records.read(name)).toStrictEqual({ value: expect.objectContaining({ label: 'first' }), version: first });
    const second = await records.replace(name, unique('replaced'), first!);
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    expect(await records.replace(name, unique('stale'), first!), 'a stale version').toBeUndefined();
    expect(await records.remove(name, first!), 'a stale delete').toBe(false);
    expect((await records.read<{ label: string }>(name))?.value.label).toBe('replaced');
    expect(await records.remove(name, second!)).toBe(true);
    expect(await records.read(name)).toBeUndefined();
    expect(await records.remove(name, second!), 'gone already').toBe(true);
    expect(await records.replace(name, unique('late'), second!), 'no replacing a removed record').toBeUndefined();
    expect(await records.create(name, unique('again')), 'created again after its delete').toBeDefined();
  });

  test('of many writers at once, exactly one creates and exactly one replaces', async () => {
    const records = await makeStore();
    const created = await Promise.all(Array.from({ length: 8 }, (_, index) => records.create('events/Ev1', unique(`c${index}`))));
    expect(created.filter((version) => version !== undefined)).toHaveLength(1);
    const version = created.find((candidate) => candidate !== undefined)!;
    const replaced = await Promise.all(Array.from({ length: 8 }, (_, index) => records.replace('events/Ev1', unique(`r${index}`), version)));
    expect(replaced.filter((candidate) => candidate !== undefined)).toHaveLength(1);
  });

  test('listing by prefix and removing old records', async () => {
    const records = await makeStore();
    await records.create('messages/T1/C1/1.1', unique('a'));
    await records.create('messages/T1/C2/1.2', unique('b'));
    await records.create('events/Ev2', unique('c'));
    const listed = await records.list('messages/');
    expect(listed.map((entry) => entry.name)).toStrictEqual(['messages/T1/C1/1.1', 'messages/T1/C2/1.2']);
    expect(Math.abs(listed[0]!.updatedMs - Date.now())).toBeLessThan(60_000);
    expect(await records.removeOlderThan('messages/', Date.now() - 60_000)).toBe(0);
    expect(await records.removeOlderThan('messages/', Date.now() + 60_000)).toBe(2);
    expect(await records.list('messages/')).toStrictEqual([]);
    expect((await records.list('events/')).map((entry) => entry.name)).toStrictEqual(['events/Ev2']);
  });

  test('names that could leave the folder are refused', async () => {
    const records = await makeStore();
    for (const name of ['../escape', 'leases/../../x', 'a//b', '', 'leases/T1/C1/..']) {
      await expect(records.create(name, unique('x')), name).rejects.toThrow(/invalid record name/);
    }
  });
});

describe('RecordStore on GCS when answers are lost', () => {
  test('a create, a replace and a delete whose answers were lost are recognised as done', async () => {
    const records = await onGcs[1]();
    gcs.requests.length = 0;
    const isRecord = (request: { path: string; query: Record<string, string> }) => (request.query.name ?? decodeURIComponent(request.path)).includes('coordination/leases/');
    gcs.loseResponses(1, isRecord);
    const created = await records.create('leases/T1/C1/2.1', unique('mine'));
    expect(created, 'the retry met the first attempt: ours').toBeDefined();
    gcs.loseResponses(1, isRecord);
    const replaced = await records.replace('leases/T1/C1/2.1', unique('mine again'), created!);
    expect(replaced).toBeDefined();
    expect((await records.read('leases/T1/C1/2.1'))?.version).toBe(replaced);
    gcs.loseResponses(1, isRecord);
    expect(await records.remove('leases/T1/C1/2.1', replaced!)).toBe(true);
    expect(gcs.requests.filter((request) => request.status === 412).length, 'each retry met a 412').toBe(3);
    expect(await records.create('leases/T1/C1/2.1', unique('someone else'))).toBeDefined();
    expect(await records.create('leases/T1/C1/2.1', unique('mine, too late')), 'a real conflict stays one').toBeUndefined();
  });
});
