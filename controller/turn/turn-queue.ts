import PQueue from 'p-queue';

/**
 * Turn scheduling: one turn at a time per thread, in arrival order; turns of different threads in
 * parallel up to a global limit. A thread's queue exists only while it has work, so memory does not
 * grow with the number of threads ever seen.
 */
export class TurnQueue {
  private readonly global: PQueue;
  private readonly threads = new Map<string, PQueue>();

  constructor(maxConcurrentTurns: number) {
    this.global = new PQueue({ concurrency: maxConcurrentTurns });
  }

  /** Turns waiting or running for this thread (0 = idle). */
  depth(thread: string): number {
    const queue = this.threads.get(thread);
    return queue === undefined ? 0 : queue.size + queue.pending;
  }

  /** Schedules `work` after every earlier turn of the same thread; resolves with its result. */
  enqueue<T>(thread: string, work: () => Promise<T>): Promise<T> {
    let queue = this.threads.get(thread);
    if (queue === undefined) {
      queue = new PQueue({ concurrency: 1 });
      this.threads.set(thread, queue);
    }
    const current = queue;
    const result = current.add(() => this.global.add(work)) as Promise<T>;
    void result
      .catch(() => {})
      .finally(() => {
        if (current.size === 0 && current.pending === 0 && this.threads.get(thread) === current) this.threads.delete(thread);
      });
    return result;
  }

  /** Resolves when every queued and running turn has finished. */
  async onIdle(): Promise<void> {
    while (this.threads.size > 0 || this.global.size > 0 || this.global.pending > 0) {
      await Promise.all([...this.threads.values()].map((queue) => queue.onIdle()));
      await this.global.onIdle();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
