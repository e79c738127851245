import { z } from 'zod';
import type { Workspace } from '../../workspace/workspace.js';

/**
 * The thread's Cloud Run session, in the thread's controller state (`session`, beside the history; out of
 * the sandbox's reach). It is what lets a restarted controller, or another instance that takes the thread's
 * next turn, find the live execution instead of starting a second one, and it is the fence that keeps two
 * controllers from driving one session: every change is a conditional write on the version read last
 * (Workspace.writeState), and the request numbers it hands out are written here before the request itself.
 */

export const SESSION_STATE = 'session';

const recordSchema = z.object({
  sessionId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  executionName: z.string().min(1),
  /** The number the next request will have; requests 1 … nextSeq-1 were handed out (a crash may have lost the last). */
  nextSeq: z.number().int().positive(),
  /** The number of the last step request handed out (0: none yet): its result tells whether a step is still running. */
  lastStep: z.number().int().nonnegative(),
  /** Epoch ms: the relay ends the session then (OI_SESSION_END_AT), before the session's token expires. */
  endsAt: z.number(),
  tokenExpiresAt: z.number(),
  idleSec: z.number().int().positive(),
  /** Epoch ms of the last request: the relay ends the session idleSec after its last activity, which is later. */
  lastUsedAt: z.number(),
  startedAt: z.number(),
});

export type SessionRecord = z.infer<typeof recordSchema>;

/** The record and the version to write the next one against (null: there is no state object yet). */
export async function readSessionRecord(workspace: Workspace): Promise<{ record?: SessionRecord; version: string | null }> {
  const stored = await workspace.readState<unknown>(SESSION_STATE);
  if (stored === undefined) return { version: null };
  const parsed = recordSchema.safeParse(stored.value);
  // A record that does not parse (an older controller's, or cleared) names no session that could be reused.
  return parsed.success ? { record: parsed.data, version: stored.version } : { version: stored.version };
}

/** Writes the record if the state is still at `version`; throws StateConflictError otherwise. Returns the new version. */
export function writeSessionRecord(workspace: Workspace, record: SessionRecord, version: string | null): Promise<string> {
  return workspace.writeState(SESSION_STATE, recordSchema.parse(record), version);
}
