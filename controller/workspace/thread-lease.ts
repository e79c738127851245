import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { HeldLease, leaseWrite, type LeaseRecord, type LeaseSettings, type TurnJournal } from './held-lease.js';
import { parseThreadPath, threadPath, type ThreadKey } from './thread-key.js';
import { recordName, type RecordStore } from './records.js';

/**
 * One turn at a time per thread, across instances (issue 15). Each thread with work has one record,
 * `coordination/leases/<team>/<channel>/<thread_ts>`, that is at once:
 * - the lease: which instance runs the thread's turns (`holder`, `leaseId`) and until when (`expiresAtMs`, pushed
 *   forward by renewals while the turn runs);
 * - the turn journal: the turn running now (`turn`: its id, its mention, its status message once known); a
 *   record whose lease expired with a turn in it is a turn that ended without an end;
 * - the inbox: mentions waiting, in arrival order.
 * Every change is a compare-and-swap of the whole record, so the inbox and the lease can never disagree: a
 * mention appended while the holder releases makes the release's precondition fail, and the holder runs it. The
 * record exists only while the thread has work: the last release deletes it (GCS) or leaves a tombstone (local).
 *
 * A turn costs the record two requests when nothing waits: a create (the lease and the journal's start) and a
 * delete (its end). Renewals (every third of the lease) carry the status message's ts.
 */

const LEASES = 'leases/';
const MAX_ATTEMPTS = 20;

const recordSchema = z.object({
  holder: z.string().nullable(),
  leaseId: z.string().nullable(),
  expiresAtMs: z.number(),
  turn: z
    .object({ id: z.string(), entry: z.unknown(), startedAtMs: z.number(), statusTs: z.string().optional(), stopRequestedBy: z.string().optional() })
    .nullable(),
  inbox: z.array(z.unknown()),
  writeId: z.string(),
});

export type StopRequest = 'stopped' | 'not_allowed' | 'not_running';

export type Submitted<Entry> = { lease: HeldLease<Entry>; queued: boolean } | { lease?: undefined; queued: true };

export class ThreadLeases<Entry> {
  constructor(
    private readonly records: RecordStore,
    private readonly settings: LeaseSettings,
  ) {}

  /**
   * Adds a mention to its thread. When the thread is free, this instance takes its lease and the mention is the
   * turn to run now; when another holder's lease is live, the mention joins the inbox and `queued` is true; when
   * the lease expired (its holder died) or was handed over, this instance takes it over, with the turn left
   * unfinished (to be told as interrupted) and the inbox before the mention.
   * With `take: false` (an instance shutting down) the mention only joins the inbox, of a handed-over record when
   * the thread is free, for the next sweep of another instance.
   */
  async submit(thread: ThreadKey, entry: Entry, options: { take?: boolean } = {}): Promise<Submitted<Entry>> {
    const take = options.take ?? true;
    const name = leaseName(thread);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const now = this.settings.now();
      const fresh = take
        ? leaseWrite<Entry>({ holder: this.settings.instance, leaseId: randomUUID(), expiresAtMs: now + this.settings.leaseMs, turn: journal(entry, now), inbox: [] })
        : leaseWrite<Entry>({ holder: null, leaseId: null, expiresAtMs: 0, turn: null, inbox: [entry] });
      const created = await this.records.create(name, fresh);
      if (created !== undefined && !take) return { queued: true };
      if (created !== undefined) return { lease: new HeldLease(this.records, this.settings, { thread, name, version: created, record: fresh, interrupted: false }), queued: false };
      const current = await this.readRecord(name);
      if (current === undefined) continue; // released meanwhile: try again
      const { value: record, version } = current;
      if (isLive(record, now) || !take) {
        const appended = leaseWrite<Entry>({ ...record, inbox: [...record.inbox, entry] });
        if ((await this.records.replace(name, appended, version)) !== undefined) return { queued: true };
        continue;
      }
      const taken = await this.takeOver(thread, current, [entry]);
      if (taken !== undefined) return { lease: taken, queued: record.inbox.length > 0 };
    }
    throw new Error(`the lease of ${threadPath(thread)} kept changing: gave up after ${MAX_ATTEMPTS} attempts`);
  }

  /** The sweep: takes over every lease whose holder is gone (expired) or that was handed over, except `skip`'s. */
  async takeExpired(skip: (thread: ThreadKey) => boolean): Promise<HeldLease<Entry>[]> {
    const taken: HeldLease<Entry>[] = [];
    for (const { name } of await this.records.list(LEASES)) {
      const thread = parseThreadPath(name.slice(LEASES.length));
      if (skip(thread)) continue;
      const current = await this.readRecord(name);
      if (current === undefined || isLive(current.value, this.settings.now())) continue;
      const lease = await this.takeOver(thread, current, []);
      if (lease !== undefined) taken.push(lease);
    }
    return taken;
  }

  /**
   * Stop pressed on an instance that does not run the turn: finds the turn among the leases and records the request
   * in its journal; the holder stops it at its next renewal (within a third of the lease). `mayStop` is told who
   * asked for the turn.
   */
  async requestStop(turnId: string, user: string, mayStop: (entry: Entry) => boolean): Promise<StopRequest> {
    for (const { name } of await this.records.list(LEASES)) {
      const outcome = await this.markStop(name, user, mayStop, (id) => id === turnId);
      if (outcome !== 'not_running') return outcome;
    }
    return 'not_running';
  }

  /** Slack's own Stop names the thread, not the turn: the same request for whatever turn the thread runs now. */
  requestThreadStop(thread: ThreadKey, user: string, mayStop: (entry: Entry) => boolean): Promise<StopRequest> {
    return this.markStop(leaseName(thread), user, mayStop, () => true);
  }

  private async markStop(name: string, user: string, mayStop: (entry: Entry) => boolean, isTurn: (id: string) => boolean): Promise<StopRequest> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const current = await this.readRecord(name);
      const turn = current?.value.turn;
      if (current === undefined || turn === null || turn === undefined || !isTurn(turn.id) || !isLive(current.value, this.settings.now())) break;
      if (!mayStop(turn.entry)) return 'not_allowed';
      const requested = leaseWrite<Entry>({ ...current.value, turn: { ...turn, stopRequestedBy: user } });
      if ((await this.records.replace(name, requested, current.version)) !== undefined) return 'stopped';
    }
    return 'not_running';
  }

  private async takeOver(thread: ThreadKey, current: { value: LeaseRecord<Entry>; version: string }, arriving: Entry[]): Promise<HeldLease<Entry> | undefined> {
    const { value: record, version } = current;
    const now = this.settings.now();
    const taken = leaseWrite<Entry>({
      holder: this.settings.instance,
      leaseId: randomUUID(),
      expiresAtMs: now + this.settings.leaseMs,
      turn: record.turn,
      inbox: [...record.inbox, ...arriving],
    });
    const name = leaseName(thread);
    const written = await this.records.replace(name, taken, version);
    if (written === undefined) return undefined;
    return new HeldLease(this.records, this.settings, { thread, name, version: written, record: taken, interrupted: record.turn !== null });
  }

  private async readRecord(name: string): Promise<{ value: LeaseRecord<Entry>; version: string } | undefined> {
    const stored = await this.records.read<unknown>(name);
    if (stored === undefined) return undefined;
    const parsed = recordSchema.safeParse(stored.value);
    // A record this code cannot read is treated as a handed-over lease with nothing in it: taken and released.
    const value = parsed.success ? (parsed.data as LeaseRecord<Entry>) : leaseWrite<Entry>({ holder: null, leaseId: null, expiresAtMs: 0, turn: null, inbox: [] });
    return { value, version: stored.version };
  }
}

function journal<Entry>(entry: Entry, now: number): TurnJournal<Entry> {
  return { id: randomUUID(), entry, startedAtMs: now };
}

function isLive(record: LeaseRecord<unknown>, now: number): boolean {
  return record.holder !== null && record.expiresAtMs > now;
}

function leaseName(thread: ThreadKey): string {
  return recordName('leases', thread.team, thread.channel, thread.threadTs);
}
