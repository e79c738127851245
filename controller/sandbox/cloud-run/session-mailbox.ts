import { FileNotFoundError, INTERNAL_DIR, type Workspace } from '../../workspace/workspace.js';

/**
 * The mailbox of one Cloud Run session, under the thread's own prefix (docs/runner-protocol.md, "Mailbox"):
 *
 *   .oi/session/<sessionId>/requests/<seq>.json   controller → relay: one request line (step, stop, exit)
 *   .oi/session/<sessionId>/results/<seq>.json    relay → controller: the runner's reply to step <seq>
 *   .oi/session/<sessionId>/ready.json            the runner's `ready` line, once it has started
 *   .oi/session/<sessionId>/closed.json           why the session ended, and the first request it never took
 *
 * The relay in the execution (sandbox-image/session_relay.py) polls the requests with the GCS JSON API; the
 * controller polls the results through the Workspace. Everything in the folder is written by, or reachable
 * from, the process that runs the thread's code, so every read is bounded and checked by its caller.
 */

/** A reply larger than this is refused, not read (the runner caps its lines at 1 MiB itself). */
export const MAILBOX_MAX_BYTES = 1024 * 1024;

export type MailboxRead = { kind: 'absent' } | { kind: 'text'; text: string } | { kind: 'too-large'; size: number };

export class SessionMailbox {
  readonly folder: string;

  constructor(
    private readonly workspace: Workspace,
    readonly sessionId: string,
  ) {
    this.folder = `${INTERNAL_DIR}/session/${sessionId}`;
  }

  async writeRequest(seq: number, line: string): Promise<void> {
    await this.workspace.write(`${this.folder}/requests/${seq}.json`, line);
  }

  async hasRequest(seq: number): Promise<boolean> {
    return (await this.workspace.stat(`${this.folder}/requests/${seq}.json`)) !== undefined;
  }

  readResult(seq: number): Promise<MailboxRead> {
    return this.read(`results/${seq}.json`);
  }

  readReady(): Promise<MailboxRead> {
    return this.read('ready.json');
  }

  readClosed(): Promise<MailboxRead> {
    return this.read('closed.json');
  }

  /** Removes the folder's objects, named from the sequence numbers used (a listing would walk the whole workspace). */
  async remove(nextSeq: number): Promise<void> {
    const names = ['ready.json', 'closed.json', 'entrypoint-timings.json'];
    for (let seq = 1; seq < nextSeq; seq++) names.push(`requests/${seq}.json`, `results/${seq}.json`);
    for (let start = 0; start < names.length; start += 16) {
      await Promise.all(names.slice(start, start + 16).map((name) => this.workspace.delete(`${this.folder}/${name}`)));
    }
  }

  /** The object's text, at most MAILBOX_MAX_BYTES of it (its size is checked before a byte is read). */
  private async read(name: string): Promise<MailboxRead> {
    const path = `${this.folder}/${name}`;
    const entry = await this.workspace.stat(path);
    if (entry === undefined) return { kind: 'absent' };
    if (entry.size > MAILBOX_MAX_BYTES) return { kind: 'too-large', size: entry.size };
    const chunks: Buffer[] = [];
    let bytes = 0;
    try {
      for await (const chunk of await this.workspace.read(path)) {
        bytes += (chunk as Buffer).length;
        if (bytes > MAILBOX_MAX_BYTES) return { kind: 'too-large', size: bytes };
        chunks.push(chunk as Buffer);
      }
    } catch (error) {
      // Deleted between the stat and the read (a new session cleaning up): as if it was never there.
      if (error instanceof FileNotFoundError) return { kind: 'absent' };
      throw error;
    }
    return { kind: 'text', text: Buffer.concat(chunks).toString('utf8') };
  }
}
