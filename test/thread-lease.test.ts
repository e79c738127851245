/**
 * The per-thread lease, inbox and turn journal (controller/workspace/thread-lease.ts) with two "instances" on one
 * store, on both backends: one turn at a time, arrival order, takeover after expiry, handover, and the race of a
 * release against a mention landing in the inbox.
 */
import { describe, expect, test } from 'vitest';
import { LeaseLostError, type LeaseRecord } from '../controller/workspace/held-lease.js';
import type { RecordStore } from '../controller/workspace/records.js';
import { ThreadLeases } from '../controller/workspace/thread-lease.js';
import { recordBackends } from './helpers/record-backends.js';

const { gcs, both: backends, onGcs } = recordBackends('leases');

const thread = { team: 'T1', channel: 'C1', threadTs: '1700000000.000100' };
const RECORD = 'leases/T1/C1/1700000000.000100';
const LEASE_MS = 10_000;

/** Two instances on one store, with a clock the test moves. */
function instances(records: RecordStore) {
  const clock = { now: 1_000_000 };
  const make = (instance: string) => new ThreadLeases<string>(records, { instance, leaseMs: LEASE_MS, now: () => clock.now });
  return { a: make('instance-a'), b: make('instance-b'), clock };
}

describe.each(backends)('thread leases (%s)', (_name, makeRecords) => {
  test('a free thread is taken at once; later mentions queue in arrival order, from any instance; the last release deletes it', async () => {
    const records = await makeRecords();
    const { a, b } = instances(records);
    const first = await a.submit(thread, 'm1');
    expect(first.queued).toBe(false);
    const lease = first.lease!;
    expect(lease.current?.entry).toBe('m1');
    expect(await b.submit(thread, 'm2')).toStrictEqual({ queued: true });
    expect(await a.submit(thread, 'm3')).toStrictEqual({ queued: true });
    expect(await lease.append('m4')).toBe(true);
    const order: string[] = [];
    for (let turn = lease.current; turn; turn = (await lease.next()) ?? null) order.push(turn.entry);
    expect(order).toStrictEqual(['m1', 'm2', 'm3', 'm4']);
    expect(lease.held).toBe(false);
    expect(await records.read(RECORD)).toBeUndefined();
    expect(await lease.append('late'), 'a released lease takes no more mentions').toBe(false);
    expect((await b.submit(thread, 'm5')).queued, 'free again').toBe(false);
  });

  test('a mention that lands while the holder releases is run by the holder, never left behind', async () => {
    const records = await makeRecords();
    const { a, b } = instances(records);
    const lease = (await a.submit(thread, 'm1')).lease!;
    // B appends after A last wrote the record: A's conditional release fails and A takes B's mention.
    expect(await b.submit(thread, 'm2')).toStrictEqual({ queued: true });
    const next = await lease.next();
    expect(next?.entry).toBe('m2');
    expect(lease.held).toBe(true);
    expect(await lease.next()).toBeUndefined();
  });

  test('of two instances submitting to a free thread at once, one takes it and the other queues', async () => {
    const records = await makeRecords();
    const { a, b } = instances(records);
    const outcomes = await Promise.all([a.submit(thread, 'from a'), b.submit(thread, 'from b')]);
    expect(outcomes.filter((outcome) => outcome.lease !== undefined)).toHaveLength(1);
    expect(outcomes.filter((outcome) => outcome.lease === undefined && outcome.queued)).toHaveLength(1);
    const lease = outcomes.find((outcome) => outcome.lease !== undefined)!.lease!;
    const entries = [lease.current!.entry, (await lease.next())!.entry];
    expect([...entries].sort()).toStrictEqual(['from a', 'from b']);
  });

  test('renewals keep the lease and carry the status message; a dead holder is taken over after expiry', async () => {
    const records = await makeRecords();
    const { a, b, clock } = instances(records);
    const lease = (await a.submit(thread, 'm1')).lease!;
    lease.noteStatus(lease.current!.id, '1700000000.000200');
    clock.now += LEASE_MS - 1;
    await lease.renew();
    const journal = (await records.read<LeaseRecord<string>>(RECORD))!.value.turn;
    expect(journal).toMatchObject({ entry: 'm1', statusTs: '1700000000.000200' });
    clock.now += LEASE_MS - 1;
    expect(await b.takeExpired(() => false), 'renewed: still live').toStrictEqual([]);
    expect(await b.submit(thread, 'm2')).toStrictEqual({ queued: true });

    clock.now += LEASE_MS; // a stops renewing: it died
    const [taken] = await b.takeExpired(() => false);
    expect(taken?.interrupted, 'the turn a never ended is handed to b to tell').toBe(true);
    expect(taken?.current).toMatchObject({ entry: 'm1', statusTs: '1700000000.000200' });
    await expect(lease.renew()).rejects.toThrow(LeaseLostError);
    expect(await lease.append('m3')).toBe(false);
    expect((await taken!.next())?.entry, 'then the inbox, in order').toBe('m2');
    expect(taken!.interrupted).toBe(false);
    expect(await taken!.next()).toBeUndefined();
  });

  test('a mention sent to a thread whose holder died takes the lease over at once', async () => {
    const records = await makeRecords();
    const { a, b, clock } = instances(records);
    await a.submit(thread, 'm1');
    clock.now += LEASE_MS + 1;
    const taken = await b.submit(thread, 'm2');
    expect(taken.queued).toBe(false);
    expect(taken.lease?.interrupted).toBe(true);
    expect(taken.lease?.current?.entry).toBe('m1');
    expect((await taken.lease!.next())?.entry).toBe('m2');
  });

  test('a handed-over lease is taken by the next sweep at once, with the unfinished turn or only the inbox', async () => {
    const records = await makeRecords();
    const { a, b } = instances(records);
    const first = (await a.submit(thread, 'm1')).lease!;
    await b.submit(thread, 'm2');
    await first.handOver('keep');
    const [withTurn] = await b.takeExpired(() => false);
    expect(withTurn?.interrupted).toBe(true);
    expect(withTurn?.current?.entry).toBe('m1');
    await withTurn!.handOver('done');
    const [inboxOnly] = await a.takeExpired(() => false);
    expect(inboxOnly?.interrupted).toBe(false);
    expect(inboxOnly?.current).toBeNull();
    expect((await inboxOnly!.next())?.entry).toBe('m2');
    await inboxOnly!.handOver('done');
    expect(await records.read(RECORD), 'nothing left to hand over: released').toBeUndefined();
    expect(await a.takeExpired(() => false)).toStrictEqual([]);
  });

  test('an instance shutting down takes no lease: it leaves mentions for the others, and a turn it never started', async () => {
    const records = await makeRecords();
    const { a, b } = instances(records);
    expect(await a.submit(thread, 'm1', { take: false }), 'a free thread').toStrictEqual({ queued: true });
    const [taken] = await b.takeExpired(() => false);
    expect(taken?.current).toBeNull();
    expect((await taken!.next())?.entry).toBe('m1');
    expect(await a.submit(thread, 'm2', { take: false }), 'a busy thread').toStrictEqual({ queued: true });
    await taken!.handOver('requeue');
    const [again] = await a.takeExpired(() => false);
    const order = [(await again!.next())?.entry, (await again!.next())?.entry];
    expect(order, 'the turn that never started comes first').toStrictEqual(['m1', 'm2']);
  });
  test("Slack's Stop names the thread: another instance records it in the running turn's journal, for its asker only; the holder reads it at its renewal", async () => {
    const records = await makeRecords();
    const { a, b } = instances(records);
    const lease = (await a.submit(thread, 'U1 asks')).lease!;
    const askerOnly = (user: string) => (entry: string) => entry.startsWith(`${user} `);
    expect(await b.requestThreadStop(thread, 'U2', askerOnly('U2'))).toBe('not_allowed');
    expect(await b.requestThreadStop({ ...thread, threadTs: '1700000000.000999' }, 'U1', askerOnly('U1'))).toBe('not_running');
    expect(await b.requestThreadStop(thread, 'U1', askerOnly('U1'))).toBe('stopped');
    expect(((await records.read<LeaseRecord<string>>(RECORD))?.value.turn)?.stopRequestedBy).toBe('U1');
    await lease.renew();
    expect(lease.current?.stopRequestedBy, 'the holder sees the request when it renews').toBe('U1');
    // The turn id of the Stop button finds the same turn.
    expect(await b.requestStop(lease.current!.id, 'U1', askerOnly('U1'))).toBe('stopped');
    expect(await lease.next(), 'the last turn ends: the thread is released').toBeUndefined();
    expect(await b.requestThreadStop(thread, 'U1', askerOnly('U1'))).toBe('not_running');
  });
});

describe('thread leases on GCS when answers are lost', () => {
  test('a lost answer to the create, a renewal or the release is recognised, and never reported as a conflict', async () => {
    const records = await onGcs[1]();
    const { a } = instances(records);
    const isLease = (request: { path: string; query: Record<string, string> }) => (request.query.name ?? decodeURIComponent(request.path)).includes('coordination/leases/');
    gcs.requests.length = 0;
    gcs.loseResponses(1, isLease);
    const lease = (await a.submit(thread, 'm1')).lease!;
    expect(lease.current?.entry).toBe('m1');
    gcs.loseResponses(1, isLease);
    await lease.renew();
    gcs.loseResponses(1, isLease);
    expect(await lease.next()).toBeUndefined();
    expect(gcs.requests.filter((request) => request.status === 412)).toHaveLength(3);
    expect(await records.read(RECORD)).toBeUndefined();
  });
});
