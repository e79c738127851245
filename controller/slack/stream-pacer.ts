/**
 * Slack's rate tiers for streamed replies, shared by every stream of the process: limits apply "per API method per
 * workspace per app" (https://docs.slack.dev/apis/web-api/rate-limits), so concurrent turns share them.
 * - chat.startStream and chat.stopStream are Tier 2 (20+ a minute): a turn streams only while fewer than
 *   STARTS_PER_MINUTE streams started in the last minute; otherwise it uses the status message and replies, which
 *   cost no start (a 429 would make the web client pause every call of the process).
 * - chat.appendStream is Tier 4 (100+ a minute): one stream waits at least `baseIntervalMs` (STATUS_INTERVAL_MS)
 *   between calls, and longer when several are open, so that together they stay near APPENDS_PER_MINUTE.
 *   A base of 0 turns pacing off (tests).
 */

const STARTS_PER_MINUTE = 18;
const APPENDS_PER_MINUTE = 90;

export class StreamPacer {
  private readonly starts: number[] = [];
  private open = 0;

  constructor(
    private readonly baseIntervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts a start when the budget allows one; false means: do not stream now. */
  tryStart(): boolean {
    const now = this.now();
    while (this.starts.length > 0 && this.starts[0]! <= now - 60_000) this.starts.shift();
    if (this.starts.length >= STARTS_PER_MINUTE) return false;
    this.starts.push(now);
    return true;
  }

  opened(): void {
    this.open += 1;
  }

  closed(): void {
    this.open = Math.max(0, this.open - 1);
  }

  /** The least time between two calls of one stream now. */
  intervalMs(): number {
    if (this.baseIntervalMs === 0) return 0;
    return Math.max(this.baseIntervalMs, Math.ceil((this.open * 60_000) / APPENDS_PER_MINUTE));
  }
}
