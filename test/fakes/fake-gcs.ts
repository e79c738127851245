import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32cBase64 } from './crc32c.js';
import { GcsAccess } from './gcs-access.js';
import {
  checkObjectName,
  compareNames,
  decodeToken,
  HttpError,
  json,
  lastReturned,
  md5,
  objectRequest,
  objectResource,
  readBody,
  requireName,
  splitMultipart,
  transientError,
  type FakeObject,
  type ObjectRequest,
  type Reply,
} from './gcs-wire.js';
import { checkPreconditions } from './gcs-preconditions.js';
import { bearerToken } from './http-helpers.js';

export type { FakeObject, ObjectRequest } from './gcs-wire.js';

/**
 * A small GCS JSON API server on 127.0.0.1: the subset @google-cloud/storage uses for our
 * GcsWorkspace (bucket get; object insert media / multipart / resumable in chunks; metadata get;
 * media download with optional range; list with prefix, delimiter and pages; delete; the generation
 * and metageneration preconditions exactly as GCS applies them, gcs-preconditions.ts; bucket
 * testIamPermissions). Objects live in memory. Tokens a test declares in `access` are held to what Google
 * would allow them (gcs-access.ts). Object names GCS refuses are refused (gcs-wire.ts). `injectFailures`
 * answers 429 or 503 on demand, as GCS does under load; `loseResponses` applies a request and then answers
 * 503, as when the answer is lost on its way back (the client retries and meets its own write).
 * Anything else is answered 501 and recorded in `unexpected` (501, not 500, so the client fails at
 * once instead of retrying).
 */

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  status: number;
}

/** Requests that get a 429 or 503 instead of their answer (see `injectFailures`). */
interface Injection {
  status: 429 | 503;
  remaining: number;
  matches: (request: RecordedRequest) => boolean;
  /** Apply the request first, then answer the failure instead of its result. */
  afterApplying?: boolean;
}

interface UploadSession {
  bucket: string;
  name: string;
  contentType: string;
  metadata?: Record<string, string>;
  ifGenerationMatch?: number;
  received: Buffer[];
  receivedBytes: number;
}

let nextGeneration = 1_700_000_000_000_000;

export class FakeGcs {
  readonly buckets = new Map<string, Map<string, FakeObject>>();
  readonly requests: RecordedRequest[] = [];
  readonly unexpected: RecordedRequest[] = [];
  /** What declared bearer tokens may do (downscoped tokens, accounts without roles); others may do anything. */
  readonly access = new GcsAccess();
  /** Page size for listing (small values exercise the client's pagination). */
  pageSize = 1000;
  /** Awaited before a request naming one object is answered (FakeCloudRun keeps a session's mount in step with its mailbox). */
  readonly interceptors = new Set<(request: ObjectRequest) => Promise<void>>();
  private readonly sessions = new Map<string, UploadSession>();
  private readonly injections: Injection[] = [];
  private server: Server | undefined;
  private baseUrl = '';
  /** The bearer token of the upload request being routed (route() and insert() run without awaiting in between). */
  private uploadToken: string | undefined;

  constructor(bucketNames: string[] = ['test-bucket']) {
    for (const name of bucketNames) this.buckets.set(name, new Map());
  }

  async start(): Promise<{ url: string }> {
    const server = createServer((request, response) => void this.handle(request, response));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { url: this.baseUrl };
  }

  /** http://127.0.0.1:PORT, the `apiEndpoint` for @google-cloud/storage (after start()). */
  get url(): string {
    return this.baseUrl;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * The next `count` requests that `matches` accepts (default: every request) are answered `status` (429 or
   * 503) instead; `count: Infinity` is a storm that lasts until `clearInjections()`.
   */
  injectFailures(status: 429 | 503, count: number, matches: (request: RecordedRequest) => boolean = () => true): void {
    this.injections.push({ status, remaining: count, matches });
  }

  /**
   * The next `count` requests that `matches` accepts are carried out, but answered 503 instead of their result:
   * the answer was lost. A client that retries a write with a precondition then gets a 412 for its own write.
   */
  loseResponses(count: number, matches: (request: RecordedRequest) => boolean): void {
    this.injections.push({ status: 503, remaining: count, matches, afterApplying: true });
  }

  clearInjections(): void {
    this.injections.length = 0;
  }

  bucket(name: string): Map<string, FakeObject> {
    const bucket = this.buckets.get(name);
    if (bucket === undefined) throw new Error(`fake-gcs: no bucket ${name}`);
    return bucket;
  }

  /** Stores an object directly (test setup, the Cloud Run fake's copy-back). */
  put(bucket: string, name: string, data: Buffer, options: { contentType?: string; metadata?: Record<string, string> } = {}): FakeObject {
    const object: FakeObject = {
      data,
      generation: nextGeneration++,
      // Every insert makes a new generation, whose metageneration starts at 1 (only metadata updates raise it).
      metageneration: 1,
      contentType: options.contentType ?? 'application/octet-stream',
      updated: new Date(),
      metadata: options.metadata,
    };
    this.bucket(bucket).set(name, object);
    return object;
  }

  /** Names under a prefix, sorted (byte order, as GCS lists). */
  names(bucket: string, prefix = ''): string[] {
    return [...this.bucket(bucket).keys()].filter((name) => name.startsWith(prefix)).sort(compareNames);
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', this.baseUrl);
    const query = Object.fromEntries(url.searchParams);
    const record: RecordedRequest = { method: request.method ?? '', path: url.pathname, query, status: 0 };
    this.requests.push(record);
    try {
      const body = await readBody(request);
      const target = objectRequest(record.method, url, query, request.headers.authorization);
      if (target !== undefined) for (const intercept of this.interceptors) await intercept(target);
      const injection = this.injections.find((candidate) => candidate.remaining > 0 && candidate.matches(record));
      if (injection !== undefined) injection.remaining -= 1;
      if (injection !== undefined && injection.afterApplying !== true) throw transientError(injection.status);
      const result = this.route(request, url, query, body, bearerToken(request));
      if (injection !== undefined) throw transientError(injection.status);
      record.status = result.status;
      response.writeHead(result.status, result.headers ?? {});
      response.end(result.body);
    } catch (error) {
      if (!(error instanceof HttpError)) {
        // The client went away mid-request (an aborted upload): nothing to answer, nothing stored.
        record.status = -1;
        response.destroy();
        return;
      }
      record.status = error.status;
      if (error.status === 501) this.unexpected.push(record);
      const payload = { error: { code: error.status, message: error.message, errors: [{ reason: error.reason, message: error.message, domain: 'global' }] } };
      response.writeHead(error.status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(payload));
    }
  }

  private route(request: IncomingMessage, url: URL, query: Record<string, string>, body: Buffer, token: string | undefined): Reply {
    const method = request.method ?? '';
    // Split the raw path: object names arrive percent-encoded, slashes included.
    const parts = url.pathname.split('/').slice(1);
    const unexpected = () => new HttpError(501, 'notImplemented', `fake-gcs does not understand ${method} ${url.pathname}${url.search}`);
    if (parts[0] === 'upload' && parts.slice(1, 4).join('/') === 'storage/v1/b' && parts[5] === 'o' && parts.length === 6) {
      const bucket = decodeURIComponent(parts[4]!);
      this.bucket(bucket);
      this.uploadToken = token;
      if (method === 'POST' && query.uploadType === 'multipart') return this.insertMultipart(bucket, query, request, body);
      if (method === 'POST' && query.uploadType === 'media') return this.insert(bucket, requireName(query), body, query, request.headers['content-type']);
      if (method === 'POST' && query.uploadType === 'resumable') return this.startResumable(bucket, query, request, body);
      if (method === 'PUT' && query.upload_id !== undefined) return this.putChunk(query.upload_id, request, body);
      throw unexpected();
    }
    if (parts.slice(0, 3).join('/') !== 'storage/v1/b' || parts[3] === undefined) throw unexpected();
    const bucketName = decodeURIComponent(parts[3]);
    if (!this.buckets.has(bucketName)) throw new HttpError(404, 'notFound', `The specified bucket does not exist: ${bucketName}`);
    if (parts.length === 6 && parts[4] === 'iam' && parts[5] === 'testPermissions' && method === 'GET') {
      const permissions = this.access.heldPermissions(token, url.searchParams.getAll('permissions'));
      return json(200, { kind: 'storage#testIamPermissionsResponse', ...(permissions.length > 0 ? { permissions } : {}) });
    }
    if (parts.length === 4 && method === 'GET') {
      this.access.check(token, bucketName, { kind: 'bucket' });
      return json(200, { kind: 'storage#bucket', id: bucketName, name: bucketName, location: 'US', storageClass: 'STANDARD' });
    }
    if (parts[4] !== 'o') throw unexpected();
    if (parts.length === 5 && method === 'GET') this.access.check(token, bucketName, { kind: 'list', prefix: query.prefix ?? '' });
    if (parts.length === 5 && method === 'GET') return this.list(bucketName, query);
    if (parts.length !== 6) throw unexpected();
    const name = decodeURIComponent(parts[5]!);
    const permission = method === 'DELETE' ? 'storage.objects.delete' : 'storage.objects.get';
    this.access.check(token, bucketName, { kind: 'object', name, permission });
    if (method === 'GET') return this.get(bucketName, name, query, request);
    if (method === 'DELETE') {
      this.existing(bucketName, name, query);
      this.bucket(bucketName).delete(name);
      return { status: 204 };
    }
    throw unexpected();
  }

  /** The object a GET or DELETE targets: preconditions first (a 412 comes before a 404, as in GCS), then existence. */
  private existing(bucket: string, name: string, query: Record<string, string>): FakeObject {
    const object = this.bucket(bucket).get(name);
    checkPreconditions(object, query);
    if (object === undefined || (query.generation !== undefined && String(object.generation) !== query.generation)) {
      throw new HttpError(404, 'notFound', `No such object: ${bucket}/${name}`);
    }
    return object;
  }

  private get(bucket: string, name: string, query: Record<string, string>, request: IncomingMessage): Reply {
    const object = this.existing(bucket, name, query);
    if (query.alt === undefined || query.alt === 'json') return json(200, objectResource(bucket, name, object));
    if (query.alt !== 'media') throw new HttpError(501, 'notImplemented', `fake-gcs does not implement alt=${query.alt}`);
    const headers: Record<string, string> = {
      'content-type': object.contentType,
      'x-goog-generation': String(object.generation),
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-hash': `crc32c=${crc32cBase64(object.data)},md5=${md5(object.data)}`,
    };
    const range = request.headers.range;
    if (range === undefined) return { status: 200, headers, body: object.data };
    const match = /^bytes=(\d+)-(\d*)$/.exec(range);
    if (match === null) throw new HttpError(501, 'notImplemented', `fake-gcs does not implement Range: ${range}`);
    const start = Number(match[1]);
    const end = match[2] === '' ? object.data.length - 1 : Math.min(Number(match[2]), object.data.length - 1);
    if (start >= object.data.length) throw new HttpError(416, 'requestedRangeNotSatisfiable', 'range not satisfiable');
    headers['content-range'] = `bytes ${start}-${end}/${object.data.length}`;
    return { status: 206, headers, body: object.data.subarray(start, end + 1) };
  }

  private list(bucket: string, query: Record<string, string>): Reply {
    const prefix = query.prefix ?? '';
    const delimiter = query.delimiter;
    const after = query.pageToken === undefined ? undefined : decodeToken(query.pageToken);
    // Past the last name (or the last common prefix, and everything under it) of the previous page.
    const names = this.names(bucket, prefix).filter(
      (name) => after === undefined || (compareNames(name, after) > 0 && !(delimiter !== undefined && after.endsWith(delimiter) && name.startsWith(after))),
    );
    const maxResults = Math.min(Number(query.maxResults ?? this.pageSize), this.pageSize);
    const items: unknown[] = [];
    const prefixes = new Set<string>();
    let nextPageToken: string | undefined;
    for (const name of names) {
      if (items.length + prefixes.size >= maxResults) {
        nextPageToken = Buffer.from(lastReturned(items, prefixes)).toString('base64');
        break;
      }
      const rest = name.slice(prefix.length);
      const cut = delimiter === undefined ? -1 : rest.indexOf(delimiter);
      if (cut >= 0) prefixes.add(prefix + rest.slice(0, cut + delimiter!.length));
      else items.push(objectResource(bucket, name, this.bucket(bucket).get(name)!));
    }
    return json(200, { kind: 'storage#objects', items, prefixes: prefixes.size > 0 ? [...prefixes] : undefined, nextPageToken });
  }

  private insert(bucket: string, name: string, data: Buffer, query: Record<string, string>, contentType: string | undefined, metadata?: Record<string, string>): Reply {
    this.access.check(this.uploadToken, bucket, { kind: 'object', name, permission: 'storage.objects.create' });
    checkPreconditions(this.bucket(bucket).get(name), query);
    const object = this.put(bucket, name, data, { contentType: contentType ?? 'application/octet-stream', metadata });
    return json(200, objectResource(bucket, name, object));
  }

  private insertMultipart(bucket: string, query: Record<string, string>, request: IncomingMessage, body: Buffer): Reply {
    const boundary = /boundary=("?)([^";]+)\1/.exec(request.headers['content-type'] ?? '')?.[2];
    if (boundary === undefined) throw new HttpError(400, 'invalid', 'multipart upload without a boundary');
    const [metadataPart, mediaPart] = splitMultipart(body, boundary);
    if (metadataPart === undefined || mediaPart === undefined) throw new HttpError(400, 'invalid', 'multipart upload needs two parts');
    const resource = JSON.parse(metadataPart.body.toString('utf8')) as { name?: string; contentType?: string; metadata?: Record<string, string> };
    const name = checkObjectName(query.name ?? resource.name ?? '');
    return this.insert(bucket, name, mediaPart.body, query, resource.contentType ?? mediaPart.contentType, resource.metadata);
  }

  private startResumable(bucket: string, query: Record<string, string>, request: IncomingMessage, body: Buffer): Reply {
    const resource = body.length > 0 ? (JSON.parse(body.toString('utf8')) as { contentType?: string; metadata?: Record<string, string> }) : {};
    const name = requireName(query);
    checkPreconditions(this.bucket(bucket).get(name), query);
    const uploadId = randomUUID();
    this.sessions.set(uploadId, {
      bucket,
      name,
      contentType: resource.contentType ?? String(request.headers['x-upload-content-type'] ?? 'application/octet-stream'),
      metadata: resource.metadata,
      ifGenerationMatch: query.ifGenerationMatch === undefined ? undefined : Number(query.ifGenerationMatch),
      received: [],
      receivedBytes: 0,
    });
    const location = `${this.baseUrl}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${uploadId}`;
    return { status: 200, headers: { location }, body: '' };
  }

  private putChunk(uploadId: string, request: IncomingMessage, body: Buffer): Reply {
    const session = this.sessions.get(uploadId);
    if (session === undefined) throw new HttpError(404, 'notFound', 'No such upload session');
    const range = String(request.headers['content-range'] ?? '');
    const match = /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(range);
    if (match === null) throw new HttpError(501, 'notImplemented', `fake-gcs does not implement Content-Range: ${range}`);
    if (match[1] !== undefined) {
      if (Number(match[1]) !== session.receivedBytes) throw new HttpError(400, 'invalid', `chunk starts at ${match[1]}, expected ${session.receivedBytes}`);
      if (Number(match[2]) - Number(match[1]) + 1 !== body.length) throw new HttpError(400, 'invalid', 'Content-Range does not match the body');
      session.received.push(body);
      session.receivedBytes += body.length;
    } else if (body.length > 0) {
      throw new HttpError(400, 'invalid', 'status query with a body');
    }
    const total = match[3] === '*' ? undefined : Number(match[3]);
    if (total === undefined || total !== session.receivedBytes) {
      if (total !== undefined && total < session.receivedBytes) throw new HttpError(400, 'invalid', 'more bytes than the declared size');
      const headers: Record<string, string> = session.receivedBytes > 0 ? { range: `bytes=0-${session.receivedBytes - 1}` } : {};
      return { status: 308, headers, body: '' };
    }
    this.sessions.delete(uploadId);
    const query: Record<string, string> = session.ifGenerationMatch === undefined ? {} : { ifGenerationMatch: String(session.ifGenerationMatch) };
    return this.insert(session.bucket, session.name, Buffer.concat(session.received), query, session.contentType, session.metadata);
  }

  /** Uploads that were started but never finalized (an aborted write leaves one of these, never an object). */
  get openUploadSessions(): number {
    return this.sessions.size;
  }
}
