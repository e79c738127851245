import { randomUUID } from 'node:crypto';
import { AppError } from '../errors.js';
import type { RecordStore } from './records.js';
import { threadPath, type ThreadKey } from './thread-key.js';

/** A thread's lease as this instance holds it (thread-lease.ts describes the record). */

export interface LeaseSettings {
  /** This instance's id, written as the holder. */
  instance: string;
  /** How long a lease lasts without a renewal: a holder that dies is replaced after at most this long. */
  leaseMs: number;
  now: () => number;
}

export interface TurnJournal<Entry> {
  /** The turn's id: the status message's Stop button carries it. */
  id: string;
  /** The mention the turn answers. */
  entry: Entry;
  startedAtMs: number;
  /** The turn's status message, once a renewal has recorded it. */
  statusTs?: string;
  /** Someone pressed Stop on an instance that does not run the turn: the holder stops it at its next renewal. */
  stopRequestedBy?: string;
}

export interface LeaseRecord<Entry> {
  holder: string | null;
  /** Changes with every acquisition, so a holder that lost its lease can never mistake a later one for its own. */
  leaseId: string | null;
  expiresAtMs: number;
  turn: TurnJournal<Entry> | null;
  inbox: Entry[];
  /** Unique per write: a retried write whose first answer was lost is recognised (records.ts). */
  writeId: string;
}

/** The lease went to another instance (this one stalled past its expiry) or is released already. */
export class LeaseLostError extends AppError {
  readonly code = 'lease_lost';
}

export function leaseWrite<Entry>(fields: Omit<LeaseRecord<Entry>, 'writeId'>): LeaseRecord<Entry> {
  return { ...fields, writeId: randomUUID() };
}

const MAX_ATTEMPTS = 20;

export class HeldLease<Entry> {
  readonly thread: ThreadKey;
  /** The current turn was taken over from a holder that never ended it: it is to be told as interrupted, not run. */
  interrupted: boolean;
  private readonly name: string;
  private version: string;
  private record: LeaseRecord<Entry>;
  private released = false;
  private pendingStatus: { turnId: string; ts: string } | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly records: RecordStore,
    private readonly settings: LeaseSettings,
    state: { thread: ThreadKey; name: string; version: string; record: LeaseRecord<Entry>; interrupted: boolean },
  ) {
    this.thread = state.thread;
    this.name = state.name;
    this.version = state.version;
    this.record = state.record;
    this.interrupted = state.interrupted;
  }

  /** The turn to run (or to tell as interrupted) now; null between turns. */
  get current(): TurnJournal<Entry> | null {
    return this.record.turn;
  }

  get held(): boolean {
    return !this.released;
  }

  /** Adds a mention to the inbox; false when this instance no longer holds the lease (submit it afresh). */
  append(entry: Entry): Promise<boolean> {
    return this.serialized(async () => {
      if (this.released) return false;
      try {
        await this.update((record) => ({ ...record, inbox: [...record.inbox, entry] }));
        return true;
      } catch (error) {
        if (error instanceof LeaseLostError) return false;
        throw error;
      }
    });
  }

  /** Pushes the expiry forward, and records the status message noted since. Throws LeaseLostError. */
  renew(): Promise<void> {
    return this.serialized(() => this.update((record) => ({ ...record, expiresAtMs: this.settings.now() + this.settings.leaseMs })));
  }

  /** The current turn's status message: written to the journal with the next renewal (no request of its own). */
  noteStatus(turnId: string, ts: string): void {
    this.pendingStatus = { turnId, ts };
  }

  /**
   * Ends the current turn: the next mention of the inbox becomes the turn (resolves with it), or, when none waits,
   * the lease is released (resolves undefined). A mention appended meanwhile by any instance is never missed: the
   * release is conditional on the record being unchanged.
   */
  next(): Promise<TurnJournal<Entry> | undefined> {
    return this.serialized(async () => {
      this.interrupted = false;
      await this.update((record) => {
        const [entry, ...rest] = record.inbox;
        if (entry === undefined) return 'release';
        const now = this.settings.now();
        return { ...record, turn: { id: randomUUID(), entry, startedAtMs: now }, inbox: rest, expiresAtMs: now + this.settings.leaseMs };
      });
      return this.released ? undefined : (this.record.turn ?? undefined);
    });
  }

  /**
   * Shutdown: lets another instance take the thread at once (its next sweep). The current turn is `keep`: left
   * in the journal, so the next holder tells the thread it was interrupted; `requeue`: it never started, so it
   * goes back to the front of the inbox; `done`: it ended. Only the inbox is left (or nothing: released).
   */
  handOver(current: 'keep' | 'requeue' | 'done'): Promise<void> {
    return this.serialized(async () => {
      if (this.released) return;
      await this.update((record) => {
        const turn = current === 'keep' ? record.turn : null;
        const inbox = current === 'requeue' && record.turn !== null ? [record.turn.entry, ...record.inbox] : record.inbox;
        if (turn === null && inbox.length === 0) return 'release';
        return { ...record, holder: null, leaseId: null, expiresAtMs: 0, turn, inbox };
      });
      this.released = true;
    });
  }

  private async update(change: (record: LeaseRecord<Entry>) => Omit<LeaseRecord<Entry>, 'writeId'> | 'release'): Promise<void> {
    if (this.released) throw new LeaseLostError(`the lease of ${threadPath(this.thread)} is released`);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const changed = change(this.record);
      if (changed === 'release') {
        if (await this.records.remove(this.name, this.version)) {
          this.released = true;
          return;
        }
      } else {
        const value = leaseWrite<Entry>({ ...changed, turn: this.withStatus(changed.turn) });
        const written = await this.records.replace(this.name, value, this.version);
        if (written !== undefined) {
          this.version = written;
          this.record = value;
          if (value.turn?.statusTs === this.pendingStatus?.ts) this.pendingStatus = undefined;
          return;
        }
      }
      await this.refresh();
    }
    throw new Error(`the lease of ${threadPath(this.thread)} kept changing: gave up after ${MAX_ATTEMPTS} attempts`);
  }

  /** Another instance changed the record (a mention appended): read it again, and check it is still ours. */
  private async refresh(): Promise<void> {
    const stored = await this.records.read<LeaseRecord<Entry>>(this.name);
    if (stored === undefined || stored.value.leaseId !== this.record.leaseId || stored.value.holder !== this.settings.instance) {
      this.released = true;
      throw new LeaseLostError(`the lease of ${threadPath(this.thread)} was taken over`);
    }
    this.version = stored.version;
    this.record = stored.value;
  }

  private withStatus(turn: TurnJournal<Entry> | null): TurnJournal<Entry> | null {
    const pending = this.pendingStatus;
    if (turn === null || pending === undefined || turn.id !== pending.turnId) return turn;
    return { ...turn, statusTs: pending.ts };
  }

  private serialized<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.chain.then(operation);
    this.chain = result.catch(() => {});
    return result;
  }
}
