import type { Workspace } from '../../workspace/workspace.js';
import { SessionMailbox } from './session-mailbox.js';
import { writeSessionRecord, type SessionRecord } from './session-record.js';

/**
 * One thread's live Cloud Run session as the controller sees it: the execution, its mailbox, and the session
 * record (session-record.ts) it keeps up to date. The timing settings of sessions live here too.
 */

export interface SessionTiming {
  /** Longest wait between two reads of a step's result (issue 13: at most 250 ms); reads start 25 ms apart. */
  resultPollMs: number;
  /** How often the execution's state is read while a step waits: only to notice that it died. */
  executionCheckMs: number;
  /** After a stop request (Stop, or the timeout's backstop), how long the step may take before the execution is cancelled. */
  stopGraceMs: number;
  /** After its timeout, how long a step may take to report before the controller stops it itself. */
  timeoutGraceMs: number;
  /** A session whose runner is not ready by then (capacity, image pull, a broken start) is cancelled. */
  startTimeoutMs: number;
  /** The lifetime asked for the session's token: about 50 minutes, as the token's source lives an hour. */
  tokenLifeSec: number;
  /** The session ends this long before its token expires: the runner exits, gcsfuse uploads and unmounts with a valid token. */
  endMarginSec: number;
  /** A step goes only to a session with the step's timeout plus this left; else the session is rotated first. */
  stepReserveSec: number;
  /** At a turn's start, a session with less than a whole step plus this left is rotated ahead of time. */
  turnReserveSec: number;
  /** A session idle for longer than SANDBOX_SESSION_IDLE_SEC minus this is not reused: its relay may be exiting. */
  idleMarginSec: number;
}

export const DEFAULT_SESSION_TIMING: SessionTiming = {
  resultPollMs: 250,
  executionCheckMs: 5_000,
  stopGraceMs: 10_000,
  timeoutGraceMs: 10_000,
  startTimeoutMs: 600_000,
  tokenLifeSec: 3_000,
  endMarginSec: 120,
  stepReserveSec: 60,
  turnReserveSec: 600,
  idleMarginSec: 30,
};

export class LiveSession {
  readonly mailbox: SessionMailbox;
  /** Set once the controller knows the session ended (why, for the log); it is never used again. */
  ended: string | undefined;

  constructor(
    private readonly workspace: Workspace,
    public record: SessionRecord,
    /** The state version the record was last written at: every change is conditional on it. */
    public recordVersion: string,
    /** Whether the runner has said it is ready (ready.json); a step's time counts from then. */
    public readySeen: boolean,
  ) {
    this.mailbox = new SessionMailbox(workspace, record.sessionId);
  }

  get executionName(): string {
    return this.record.executionName;
  }

  /** Whether a step of `needSec` may still be sent: time left before the session's end, and not idle for too long. */
  usable(needSec: number, timing: SessionTiming, now = Date.now()): boolean {
    if (this.ended !== undefined) return false;
    const fits = now + needSec * 1000 < this.record.endsAt;
    const fresh = now - this.record.lastUsedAt < (this.record.idleSec - timing.idleMarginSec) * 1000;
    return fits && fresh;
  }

  /**
   * Sends one request line. Its number is written to the record first (conditional on the version read last:
   * a controller that lost the thread finds out here), then the request itself, so a record never names fewer
   * requests than the relay may have taken.
   */
  async send(line: string, kind: 'step' | 'control'): Promise<number> {
    const seq = this.record.nextSeq;
    const next: SessionRecord = { ...this.record, nextSeq: seq + 1, lastUsedAt: Date.now(), ...(kind === 'step' ? { lastStep: seq } : {}) };
    this.recordVersion = await writeSessionRecord(this.workspace, next, this.recordVersion);
    this.record = next;
    await this.mailbox.writeRequest(seq, line);
    return seq;
  }
}
