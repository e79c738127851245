import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Wire-format helpers of the GCS JSON API fake (fake-gcs.ts): errors, replies, multipart bodies, names. */

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export function json(status: number, value: unknown): Reply {
  return { status, headers: { 'content-type': 'application/json; charset=UTF-8' }, body: JSON.stringify(value) };
}

export function requireName(query: Record<string, string>): string {
  if (query.name === undefined || query.name === '') throw new HttpError(400, 'required', 'object name is required');
  return query.name;
}

export function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}

export function compareNames(left: string, right: string): number {
  return Buffer.compare(Buffer.from(left), Buffer.from(right));
}

export function decodeToken(token: string): string {
  return Buffer.from(token, 'base64').toString('utf8');
}

export function lastReturned(items: unknown[], prefixes: Set<string>): string {
  const names = [...(items as { name: string }[]).map((item) => item.name), ...prefixes].sort(compareNames);
  return names.at(-1) ?? '';
}

export function splitMultipart(body: Buffer, boundary: string): { contentType?: string; body: Buffer }[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: { contentType?: string; body: Buffer }[] = [];
  let start = body.indexOf(delimiter);
  while (start >= 0) {
    const afterDelimiter = start + delimiter.length;
    if (body.subarray(afterDelimiter, afterDelimiter + 2).toString() === '--') break;
    const next = body.indexOf(delimiter, afterDelimiter);
    if (next < 0) break;
    const part = body.subarray(afterDelimiter + 2, next - 2); // drop the CRLF after the delimiter and before the next
    const headerEnd = part.indexOf('\r\n\r\n');
    const headers = part.subarray(0, headerEnd).toString('utf8');
    parts.push({ contentType: /content-type:\s*([^\r\n]+)/i.exec(headers)?.[1], body: part.subarray(headerEnd + 4) });
    start = next;
  }
  return parts;
}

export async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  if (request.readableAborted || !request.complete) throw new Error('request aborted');
  return Buffer.concat(chunks);
}
