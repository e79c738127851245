/**
 * The live sessions of the local sandbox (issue 13), one per thread: at most `maxSessions` alive, the
 * least recently used idle one ended first when a new thread needs room; a session idle for `idleMs`
 * ends; a dead one is replaced at its thread's next step. Work for one thread runs one step at a time.
 * Generic over the session type so the bookkeeping is tested without starting runners.
 */

/** Speculative starts running at once (each is a Python start-up with the preloaded libraries). */
const MAX_CONCURRENT_WARMS = 2;

export interface PooledSession {
  /** False once the session's process is gone (crashed, killed, ended). */
  readonly alive: boolean;
  /** Ends the session (kills what is left); idempotent. */
  close(reason: string): Promise<void>;
}

export interface SessionPoolOptions<S extends PooledSession> {
  maxSessions: number;
  idleMs: number;
  /** Starts the session of a thread (its first step, or after the previous one ended). */
  start: (key: string) => Promise<S>;
  /** Told when a session ends and why (for the log). */
  onEnded?: (key: string, reason: string) => void;
}

interface Entry<S> {
  key: string;
  session: Promise<S>;
  busy: boolean;
  lastUsed: number;
  idleTimer?: NodeJS.Timeout;
}

export class SessionPool<S extends PooledSession> {
  private readonly entries = new Map<string, Entry<S>>();
  /** Per thread, the end of its latest use: the next one waits for it (one step at a time per thread). */
  private readonly locks = new Map<string, Promise<void>>();
  private readonly waiters: (() => void)[] = [];
  private closed = false;
  private warming = 0;

  constructor(private readonly options: SessionPoolOptions<S>) {}

  /** Number of live (or starting) sessions. */
  get size(): number {
    return this.entries.size;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Runs `work` with the thread's session, starting one (within the cap) when there is none or it died. */
  async use<T>(key: string, work: (session: S) => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    let unlock!: () => void;
    const chained = previous.then(() => new Promise<void>((resolve) => (unlock = resolve)));
    this.locks.set(key, chained);
    await previous;
    try {
      const entry = await this.acquire(key);
      entry.busy = true;
      clearTimeout(entry.idleTimer);
      try {
        return await work(await entry.session);
      } finally {
        entry.busy = false;
        entry.lastUsed = performance.now();
        if (this.entries.get(key) === entry) this.armIdleTimer(entry);
        this.wakeOne();
      }
    } finally {
      unlock();
      if (this.locks.get(key) === chained) this.locks.delete(key);
    }
  }

  /**
   * Starts the thread's session in the background when it has none (a speculative start: the runner's
   * start-up overlaps the model's first answer). A step that comes meanwhile waits for it. A guess never
   * ends another thread's session, and only a few run at once: a burst of mentions that may never run
   * code must not take the CPU from the steps that do.
   */
  warm(key: string): void {
    if (this.closed || this.entries.has(key) || this.locks.has(key)) return;
    if (this.warming >= MAX_CONCURRENT_WARMS || this.entries.size >= this.options.maxSessions) return;
    this.warming += 1;
    this.use(key, async () => {})
      .catch(() => {}) // a start that fails is tried again by the step
      .finally(() => (this.warming -= 1));
  }

  /** Ends a thread's session now (after a kill, or when it is no longer safe to reuse). */
  async end(key: string, reason: string): Promise<void> {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    this.entries.delete(key);
    clearTimeout(entry.idleTimer);
    this.options.onEnded?.(key, reason);
    await entry.session.then((session) => session.close(reason)).catch(() => {});
    this.wakeOne();
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.entries.keys()].map((key) => this.end(key, 'the sandbox is closing')));
    for (const wake of this.waiters.splice(0)) wake();
  }

  private async acquire(key: string): Promise<Entry<S>> {
    if (this.closed) throw new Error('the sandbox is closed');
    const existing = this.entries.get(key);
    if (existing !== undefined) {
      const alive = await existing.session.then((session) => session.alive).catch(() => false);
      if (alive) return existing;
      await this.end(key, 'its process was gone');
    }
    await this.makeRoom();
    const entry: Entry<S> = { key, session: this.options.start(key), busy: true, lastUsed: performance.now() };
    this.entries.set(key, entry);
    entry.session.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
      this.wakeOne();
    });
    return entry;
  }

  /** Ends the least recently used idle sessions until one more fits; waits while every session is busy. */
  private async makeRoom(): Promise<void> {
    while (this.entries.size >= this.options.maxSessions) {
      const idle = [...this.entries.values()].filter((entry) => !entry.busy).sort((a, b) => a.lastUsed - b.lastUsed);
      if (idle[0] !== undefined) {
        await this.end(idle[0].key, `SANDBOX_MAX_SESSIONS=${this.options.maxSessions} reached (least recently used)`);
        continue;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
      if (this.closed) throw new Error('the sandbox is closed');
    }
  }

  private wakeOne(): void {
    this.waiters.shift()?.();
  }

  private armIdleTimer(entry: Entry<S>): void {
    clearTimeout(entry.idleTimer);
    entry.idleTimer = setTimeout(() => {
      if (this.entries.get(entry.key) === entry && !entry.busy) void this.end(entry.key, `idle for ${this.options.idleMs / 1000} s (SANDBOX_SESSION_IDLE_SEC)`);
    }, this.options.idleMs);
    entry.idleTimer.unref();
  }
}
