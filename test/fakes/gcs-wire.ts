import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { crc32cBase64 } from './crc32c.js';

/** Wire-format helpers of the GCS JSON API fake (fake-gcs.ts): errors, replies, multipart bodies, names. */

export interface FakeObject {
  data: Buffer;
  generation: number;
  metageneration: number;
  contentType: string;
  updated: Date;
  /** User metadata (`metadata` in the JSON API), e.g. gcsfuse's `gcsfuse_symlink_target`. */
  metadata?: Record<string, string>;
}

/** A request that names one object: a read, a delete, or a simple upload (`uploadType=media`, name in the query). */
export interface ObjectRequest {
  method: string;
  bucket: string;
  name: string;
  upload: boolean;
  authorization?: string;
}

export function objectRequest(method: string, url: URL, query: Record<string, string>, authorization: string | undefined): ObjectRequest | undefined {
  const parts = url.pathname.split('/').slice(1).map((part) => decodeURIComponent(part));
  if (parts[0] === 'upload' && parts.length === 6 && query.name !== undefined) return { method, bucket: parts[4]!, name: query.name, upload: true, authorization };
  if (parts[0] === 'storage' && parts.length === 6 && parts[4] === 'o') return { method, bucket: parts[3]!, name: parts[5]!, upload: false, authorization };
  return undefined;
}

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
  return checkObjectName(query.name);
}

const MAX_NAME_BYTES = 1024;

/**
 * The object names GCS refuses (https://cloud.google.com/storage/docs/objects#naming): empty, longer than
 * 1024 bytes of UTF-8, containing a carriage return or a line feed, exactly `.` or `..`, or starting with
 * `.well-known/acme-challenge/`. The recommendations on that page (no `#`, `[`, `*`, ...) are not refusals.
 */
export function checkObjectName(name: string): string {
  const refuse = (why: string) => new HttpError(400, 'invalid', `The specified object name is not valid: ${why}.`);
  if (name === '') throw new HttpError(400, 'required', 'object name is required');
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) throw refuse(`it is longer than ${MAX_NAME_BYTES} bytes`);
  if (/[\r\n]/.test(name)) throw refuse('it contains a carriage return or a line feed');
  if (name === '.' || name === '..') throw refuse(`it is "${name}"`);
  if (name.startsWith('.well-known/acme-challenge/')) throw refuse('it starts with .well-known/acme-challenge/');
  return name;
}

/** The error bodies GCS sends with a 429 or a 503 (https://cloud.google.com/storage/docs/json_api/v1/status-codes). */
export function transientError(status: 429 | 503): HttpError {
  return status === 429
    ? new HttpError(429, 'rateLimitExceeded', 'The project exceeded the rate limit for CloudStorage and for that bucket.')
    : new HttpError(503, 'backendError', 'We encountered an internal error. Please try again.');
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

/** The JSON API's object resource (https://cloud.google.com/storage/docs/json_api/v1/objects#resource). */
export function objectResource(bucket: string, name: string, object: FakeObject): Record<string, unknown> {
  return {
    kind: 'storage#object',
    id: `${bucket}/${name}/${object.generation}`,
    name,
    bucket,
    generation: String(object.generation),
    metageneration: String(object.metageneration),
    contentType: object.contentType,
    size: String(object.data.length),
    md5Hash: md5(object.data),
    crc32c: crc32cBase64(object.data),
    etag: `C${object.generation}`,
    timeCreated: object.updated.toISOString(),
    updated: object.updated.toISOString(),
    storageClass: 'STANDARD',
    metadata: object.metadata,
  };
}
