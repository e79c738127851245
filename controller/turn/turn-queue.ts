import PQueue from 'p-queue';

/**
 * Turn scheduling: one turn at a time per thread, in arrival order; turns of different threads in
 * parallel up to a global limit. A thread's queue exists only while it has work, so memory does not
 * grow with the number of threads ever seen.
 */
export class TurnQueue {
  private readonly global: PQueue;
  private readonly threads = new Map<string, { queue: PQueue; running: boolean }>();

  constructor(maxConcurrentTurns: number) {
    this.global = new PQueue({ concurrency: maxConcurrentTurns });
  }

  /** Turns waiting or running for this thread (0 = idle). */
  depth(thread: string): number {
    const entry = this.threads.get(thread);
    return entry === undefined ? 0 : entry.queue.size + entry.queue.pending;
  }

  /** True while one of this thread's turns is running (not merely queued). */
  isRunning(thread: string): boolean {
    return this.threads.get(thread)?.running ?? false;
  }

  /** Schedules `work` after every earlier turn of the same thread; resolves with its result. */
  enqueue<T>(thread: string, work: () => Promise<T>): Promise<T> {
    let entry = this.threads.get(thread);
    if (entry === undefined) {
      entry = { queue: new PQueue({ concurrency: 1 }), running: false };
      this.threads.set(thread, entry);
    }
    const current = entry;
    const result = current.queue.add(
      () =>
        this.global.add(async () => {
          current.running = true;
          try {
            return await work();
          } finally {
            current.running = false;
          }
        }),
    ) as Promise<T>;
    void result
      .catch(() => {})
      .finally(() => {
        if (current.queue.size === 0 && current.queue.pending === 0 && this.threads.get(thread) === current) {
          this.threads.delete(thread);
        }
      });
    return result;
  }

  /** Resolves when every queued and running turn has finished. */
  async onIdle(): Promise<void> {
    while (this.threads.size > 0 || this.global.size > 0 || this.global.pending > 0) {
      await Promise.all([...this.threads.values()].map((entry) => entry.queue.onIdle()));
      await this.global.onIdle();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  get activeThreads(): number {
    return this.threads.size;
  }
}
