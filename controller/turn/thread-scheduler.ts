import PQueue from 'p-queue';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Mention } from '../slack/mention.js';
import { LeaseLostError, type HeldLease, type TurnJournal } from '../workspace/held-lease.js';
import { threadPath, type ThreadKey } from '../workspace/thread-key.js';
import type { StopRequest, ThreadLeases } from '../workspace/thread-lease.js';
import { TurnInterruption } from './turn-ending.js';

/**
 * Turn scheduling across instances (issue 15), over the thread leases of workspace/thread-lease.ts: one turn at a
 * time per thread in arrival order, whichever instance each mention reached; turns of different threads in
 * parallel, up to `maxConcurrentTurns` on this instance. The instance holding a thread's lease runs its turns one
 * after the other, renewing the lease every third of its duration, until the inbox is empty. Every instance
 * sweeps for leases whose holder went away (at start and every `sweepMs`), takes them over and tells the thread
 * about the turn left unfinished. At shutdown the leases are handed over, never dropped.
 */

export interface TurnWork {
  /** Runs the mention's turn or command to its end. Never rejects (the Bot's catch-all). */
  run(mention: Mention, turn: { id: string; signal: AbortSignal; onStatusPosted: (ts: string) => void }): Promise<void>;
  /** Tells the thread that this turn, left by an instance that went away, never finished. Never rejects. */
  recover(journal: TurnJournal<Mention>): Promise<void>;
}

interface Waiter {
  resolve: () => void;
  /** The lease the mention went to on this instance, once known. */
  lease?: HeldLease<Mention>;
}

export interface SchedulerOptions {
  maxConcurrentTurns: number;
  leaseMs: number;
  sweepMs: number;
  logger: Logger;
}

export class ThreadScheduler {
  private readonly slots: PQueue;
  private readonly held = new Map<string, HeldLease<Mention>>();
  private readonly loops = new Set<Promise<void>>();
  /** The turn running now in each thread this instance holds, to interrupt it. */
  private readonly running = new Map<string, AbortController>();
  /** Callers waiting for a mention this instance will run (`<thread path> <mention ts>`), with the lease it went to. */
  private readonly waiters = new Map<string, Waiter[]>();
  /** One submit at a time per thread on this instance, so a second one finds the lease the first took. */
  private readonly submitting = new Map<string, Promise<unknown>>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping = false;
  private closing = false;

  constructor(
    private readonly leases: ThreadLeases<Mention>,
    private readonly work: TurnWork,
    private readonly options: SchedulerOptions,
  ) {
    this.slots = new PQueue({ concurrency: options.maxConcurrentTurns });
  }

  /**
   * Puts a mention in its thread's order. `queued`: a turn runs or waits before it (decided by the store, across
   * instances). `done` resolves when this instance has run it, or at once when another instance will.
   */
  submit(mention: Mention): Promise<{ queued: boolean; done: Promise<void> }> {
    const path = threadPath(mention.key);
    const result = (this.submitting.get(path) ?? Promise.resolve()).then(() => this.place(path, mention));
    const tail = result.catch(() => {});
    this.submitting.set(path, tail);
    void tail.finally(() => {
      if (this.submitting.get(path) === tail) this.submitting.delete(path);
    });
    return result;
  }

  /** Looks for leases left by instances that went away now, then every `sweepMs`. */
  start(): void {
    void this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), this.options.sweepMs);
    this.sweepTimer.unref();
  }

  /** Shutdown begins: no new lease is taken here; each thread is handed over after its running turn. */
  close(): void {
    this.closing = true;
    clearInterval(this.sweepTimer);
  }

  /** Last step of a shutdown: every lease still held goes to the other instances, a running turn kept in it. */
  async handOverAll(): Promise<void> {
    await Promise.all(
      [...this.held].map(([path, lease]) =>
        lease.handOver(this.running.has(path) ? 'keep' : 'requeue').catch((error: unknown) => this.options.logger.warn('lease not handed over', { thread: path, error: describeError(error) })),
      ),
    );
  }

  /** Stop pressed here for a turn another instance runs: recorded in that thread's journal (thread-lease.ts). */
  requestStop(turnId: string, user: string, mayStop: (mention: Mention) => boolean): Promise<StopRequest> {
    return this.leases.requestStop(turnId, user, mayStop);
  }

  /** Slack's Stop control pressed here for a thread whose turn another instance runs. */
  requestThreadStop(thread: ThreadKey, user: string, mayStop: (mention: Mention) => boolean): Promise<StopRequest> {
    return this.leases.requestThreadStop(thread, user, mayStop);
  }

  /** Resolves when this instance holds no lease any more (every turn it took has ended or was handed over). */
  async drain(): Promise<void> {
    while (this.loops.size > 0) await Promise.allSettled([...this.loops]);
  }

  private async place(path: string, mention: Mention): Promise<{ queued: boolean; done: Promise<void> }> {
    // Registered before the mention reaches a lease: the holder's loop may run it before this call returns.
    const waiter: Waiter = { resolve: () => {} };
    const done = new Promise<void>((resolve) => (waiter.resolve = resolve));
    const key = `${path} ${mention.ts}`;
    this.waiters.set(key, [...(this.waiters.get(key) ?? []), waiter]);
    try {
      const local = this.held.get(path);
      if (local !== undefined && !this.closing) {
        waiter.lease = local;
        if (await local.append(mention)) return { queued: true, done };
      }
      const placed = await this.leases.submit(mention.key, mention, { take: !this.closing });
      if (placed.lease === undefined) {
        this.release(key); // another instance runs it
        return { queued: true, done };
      }
      waiter.lease = placed.lease;
      this.hold(placed.lease);
      return { queued: placed.queued, done };
    } catch (error) {
      this.release(key);
      throw error;
    }
  }

  private hold(lease: HeldLease<Mention>): void {
    const path = threadPath(lease.thread);
    this.held.set(path, lease);
    const loop: Promise<void> = this.loop(path, lease)
      .catch((error: unknown) => this.options.logger.error('thread turns failed', { thread: path, error: describeError(error) }))
      .finally(() => {
        if (this.held.get(path) === lease) this.held.delete(path);
        // Mentions given to this lease and not run here (it was lost or handed over) are another instance's now.
        for (const [key, waiters] of this.waiters) {
          if (waiters.some((waiter) => waiter.lease === lease)) this.release(key);
        }
        this.loops.delete(loop);
      });
    this.loops.add(loop);
  }

  /** The holder's loop: the current turn, then the inbox, until it is empty (the lease is released) or lost. */
  private async loop(path: string, lease: HeldLease<Mention>): Promise<void> {
    const renewals = setInterval(() => void this.renew(path, lease), Math.max(100, Math.floor(this.options.leaseMs / 3)));
    renewals.unref();
    try {
      let turn = lease.current ?? (await this.advance(lease));
      while (turn !== undefined) {
        if (lease.interrupted) await this.work.recover(turn);
        else await this.runOne(path, lease, turn);
        this.settle(path, turn.entry);
        if (!lease.held) return;
        turn = await this.advance(lease);
      }
    } finally {
      clearInterval(renewals);
    }
  }

  private async advance(lease: HeldLease<Mention>): Promise<TurnJournal<Mention> | undefined> {
    if (!this.closing) return lease.next();
    await lease.handOver('done');
    return undefined;
  }

  private async runOne(path: string, lease: HeldLease<Mention>, turn: TurnJournal<Mention>): Promise<void> {
    await this.slots.add(async () => {
      if (this.closing) {
        await lease.handOver('requeue'); // shutting down before it started: another instance runs it
        return;
      }
      const controller = new AbortController();
      this.running.set(path, controller);
      try {
        await this.work.run(turn.entry, { id: turn.id, signal: controller.signal, onStatusPosted: (ts) => lease.noteStatus(turn.id, ts) });
      } finally {
        this.running.delete(path);
      }
    });
  }

  private async renew(path: string, lease: HeldLease<Mention>): Promise<void> {
    if (!lease.held) return;
    try {
      await lease.renew();
      // Stop pressed on another instance reaches the holder through the journal, read back by the renewal.
      if (lease.current?.stopRequestedBy !== undefined) this.running.get(path)?.abort();
    } catch (error) {
      if (!(error instanceof LeaseLostError)) {
        this.options.logger.warn('lease not renewed', { thread: path, error: describeError(error) });
        return;
      }
      // This instance stalled past the lease's expiry and another one took the thread over (and told it).
      this.options.logger.warn('lease lost', { thread: path });
      this.running.get(path)?.abort(new TurnInterruption('lease_lost'));
    }
  }

  private async sweep(): Promise<void> {
    if (this.closing || this.sweeping) return;
    this.sweeping = true;
    try {
      const taken = await this.leases.takeExpired((thread: ThreadKey) => this.held.has(threadPath(thread)) || this.submitting.has(threadPath(thread)));
      for (const lease of taken) {
        this.options.logger.info('lease taken over', { thread: threadPath(lease.thread), unfinishedTurn: lease.interrupted });
        this.hold(lease);
      }
    } catch (error) {
      this.options.logger.warn('lease sweep failed', { error: describeError(error) });
    } finally {
      this.sweeping = false;
    }
  }

  private settle(path: string, mention: Mention): void {
    this.release(`${path} ${mention.ts}`);
  }

  private release(key: string): void {
    for (const waiter of this.waiters.get(key) ?? []) waiter.resolve();
    this.waiters.delete(key);
  }
}
