import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * Final status edits still waiting for the edit interval. A turn lets its last status edit finish in the
 * background: it may wait up to STATUS_INTERVAL_MS to keep Slack's edit rate, and holding the thread's queue
 * slot for that would cap throughput. Shutdown (Bot.drain) waits for them.
 */
export class StatusEdits {
  private readonly pending = new Set<Promise<void>>();

  track(edit: Promise<void>, log: Logger): void {
    const tracked = edit.catch((error: unknown) => log.warn('final status edit failed', { error: describeError(error) }));
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }

  /** Resolves when every tracked edit has been sent. */
  async settle(): Promise<void> {
    await Promise.all([...this.pending]);
  }
}
