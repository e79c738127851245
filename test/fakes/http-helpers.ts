/**
 * Small HTTP utilities shared by the fake servers in this folder (test-only code).
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type RequestHandler = (request: IncomingMessage, response: ServerResponse) => Promise<void> | void;

/** Starts an HTTP server on 127.0.0.1 on a free port; errors thrown by the handler answer 500. */
export async function listenLocal(handler: RequestHandler): Promise<{ server: Server; port: number }> {
  const server = createServer((request, response) => {
    Promise.resolve(handler(request, response)).catch((error: unknown) => {
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain' });
      response.end(`fake server error: ${error instanceof Error ? error.stack : String(error)}`);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

/** Closes a server, dropping kept-alive client connections so tests end promptly. */
export async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

export async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  response.end(text);
}

export function bearerToken(request: IncomingMessage): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(.+)$/i.exec(header);
  return match?.[1];
}

/**
 * Extracts the first file part of a multipart/form-data body (what @slack/web-api sends to an upload URL),
 * or undefined when the body has no file part.
 */
export function firstMultipartFile(body: Buffer, contentType: string): { filename?: string; bytes: Buffer } | undefined {
  const boundaryMatch = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const boundary = boundaryMatch?.[1] ?? boundaryMatch?.[2];
  if (!boundary) return undefined;
  const delimiter = Buffer.from(`--${boundary}`);
  let position = body.indexOf(delimiter);
  while (position !== -1) {
    const headerStart = position + delimiter.length + 2; // skip CRLF after the delimiter
    const headerEnd = body.indexOf('\r\n\r\n', headerStart);
    if (headerEnd === -1) return undefined;
    const next = body.indexOf(delimiter, headerEnd);
    if (next === -1) return undefined;
    const partHeaders = body.subarray(headerStart, headerEnd).toString('utf8');
    const filename = /filename="([^"]*)"/i.exec(partHeaders)?.[1];
    if (filename !== undefined) {
      return { filename, bytes: body.subarray(headerEnd + 4, next - 2) }; // part ends with CRLF before delimiter
    }
    position = next;
  }
  return undefined;
}

/** Resolves when `check()` returns a truthy value; re-checks whenever `subscribe` signals a change. */
export function waitUntil<T>(
  check: () => T | undefined | null | false,
  subscribe: (listener: () => void) => () => void,
  timeoutMs: number,
  describe: () => string,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const first = check();
    if (first) {
      resolve(first);
      return;
    }
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`waitFor timed out after ${timeoutMs} ms.\n${describe()}`));
    }, timeoutMs);
    const unsubscribe = subscribe(() => {
      let value: T | undefined | null | false;
      try {
        value = check();
      } catch (error) {
        clearTimeout(timer);
        unsubscribe();
        reject(error);
        return;
      }
      if (value) {
        clearTimeout(timer);
        unsubscribe();
        resolve(value);
      }
    });
  });
}
