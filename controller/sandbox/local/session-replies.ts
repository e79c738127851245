import { z } from 'zod';
import type { ResourceLimits, StepRequest } from '../sandbox.js';

/**
 * The session mode of runner.py (docs/runner-protocol.md, "Session mode"): requests and replies as
 * JSON lines. Every reply comes from a process that runs the thread's code, so each is checked
 * against these schemas before anything of it is used.
 */

export const SESSION_LINE_MAX_BYTES = 1024 * 1024;

const readySchema = z.object({
  type: z.literal('ready'),
  restored: z.enum(['checkpoint', 'fresh']),
  notes: z.array(z.string()),
});

const resultSchema = z.object({
  type: z.literal('result'),
  id: z.string(),
  stdout: z.string(),
  stderr: z.string(),
  outputTruncated: z.boolean(),
  error: z.object({ name: z.string(), value: z.string(), traceback: z.string() }).nullable(),
  durationMs: z.number(),
  figures: z.array(z.string()),
  files: z.array(z.object({ path: z.string(), change: z.enum(['created', 'modified', 'deleted']), size: z.number() })),
  unsaved: z.array(z.string()),
  notes: z.array(z.string()),
  limit: z.enum(['timeout', 'memory', 'cpu', 'processes', 'file_size']).optional(),
  restored: z.enum(['memory', 'checkpoint', 'fresh']),
  displays: z.array(z.unknown()).optional(),
});

const errorSchema = z.object({ type: z.literal('error'), id: z.string().optional(), message: z.string() });

const replySchema = z.discriminatedUnion('type', [readySchema, resultSchema, errorSchema]);

export type SessionReply = z.infer<typeof replySchema>;
export type SessionResultReply = z.infer<typeof resultSchema>;

/** One reply line, checked; a problem (for the log, and to end the session) when it is not one. */
export function parseSessionReply(line: string): { reply: SessionReply } | { problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return { problem: 'a reply line is not JSON' };
  }
  const parsed = replySchema.safeParse(json);
  if (!parsed.success) return { problem: `a reply does not match the protocol: ${z.prettifyError(parsed.error).replaceAll('\n', ' ')}` };
  return { reply: parsed.data };
}

export function stepRequestLine(id: string, request: StepRequest, limits: ResourceLimits, maxOutputBytes: number): string {
  return JSON.stringify({ type: 'step', id, code: request.code, timeoutSec: request.timeoutSec, limits, maxOutputBytes }) + '\n';
}

export function stopRequestLine(id: string): string {
  return JSON.stringify({ type: 'stop', id }) + '\n';
}
