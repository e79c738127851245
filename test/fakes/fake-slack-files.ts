/**
 * The file half of FakeSlack: files the tests put into Slack (served at url_private_download only with the bot
 * token, like files.slack.com) and files the bot uploads (files.getUploadURLExternal -> POST bytes ->
 * files.completeUploadExternal).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { bearerToken, firstMultipartFile, readBody } from './http-helpers.js';

/** How the fake answers a download: the real bytes, a 404 (file deleted), or the HTML login page (no files:read). */
export type FileServeMode = 'ok' | 'deleted' | 'login-page';

export interface AddFileOptions {
  name: string;
  /** The bytes, or a factory for a fresh stream per download (for huge files never held in memory). */
  content: Buffer | string | (() => Readable);
  mimetype?: string;
  /** Required when content is a stream factory. */
  size?: number;
  mode?: FileServeMode;
  title?: string;
  user?: string;
}

/** A Slack file object as found in events, conversations.replies and files.info. */
export interface SlackFile {
  id: string;
  name: string;
  title: string;
  mimetype: string;
  filetype: string;
  size: number;
  user: string;
  created: number;
  mode: 'hosted';
  is_external: false;
  url_private: string;
  url_private_download: string;
  permalink: string;
}

export interface CompletedUpload {
  fileId: string;
  filename: string;
  title: string;
  channelId: string | undefined;
  threadTs: string | undefined;
  bytes: Buffer;
  initialComment: string | undefined;
  /** The length the client announced in files.getUploadURLExternal. */
  declaredLength: number;
}

export interface DownloadRecord {
  fileId: string;
  authorized: boolean;
  status: number;
  served: 'bytes' | 'login-page' | 'not-found';
}

interface StoredFile {
  file: SlackFile;
  content: Buffer | (() => Readable);
  mode: FileServeMode;
}

interface PendingUpload {
  fileId: string;
  filename: string;
  declaredLength: number;
  bytes?: Buffer;
}

export const LOGIN_PAGE_HTML = `<!DOCTYPE html>
<html lang="en-US">
<head><meta charset="utf-8"><title>Slack</title></head>
<body><div id="page"><h1>Sign in to your workspace</h1><form action="/signin" method="post"></form></div></body>
</html>
`;

/** A stream factory yielding `totalBytes` bytes of a repeated pattern, generated lazily (nothing big in memory). */
export function generatedContent(totalBytes: number, pattern: string | Buffer = 'id,value\n1,2\n'): () => Readable {
  const unit = Buffer.isBuffer(pattern) ? pattern : Buffer.from(pattern);
  const repeats = Math.max(1, Math.floor((64 * 1024) / unit.length));
  const block = Buffer.concat(Array.from({ length: repeats }, () => unit));
  return () => {
    let remaining = totalBytes;
    return new Readable({
      read() {
        if (remaining <= 0) {
          this.push(null);
          return;
        }
        const size = Math.min(remaining, block.length);
        remaining -= size;
        this.push(size === block.length ? block : block.subarray(0, size));
      },
    });
  };
}

export class FakeSlackFiles {
  readonly uploads: CompletedUpload[] = [];
  readonly downloads: DownloadRecord[] = [];
  private readonly files = new Map<string, StoredFile>();
  private readonly pending = new Map<string, PendingUpload>();
  private nextId = 1;

  constructor(
    private readonly botToken: string,
    private readonly baseUrl: () => string,
    private readonly changed: () => void,
  ) {}

  newFileId(): string {
    return `F${String(this.nextId++).padStart(8, '0')}`;
  }

  add(options: AddFileOptions): SlackFile {
    const content = typeof options.content === 'string' ? Buffer.from(options.content) : options.content;
    const size = options.size ?? (Buffer.isBuffer(content) ? content.length : undefined);
    if (size === undefined) throw new Error('addFile: pass size when content is a stream factory');
    const file = this.describe(this.newFileId(), options.name, size, options.mimetype, options.title, options.user);
    this.files.set(file.id, { file, content, mode: options.mode ?? 'ok' });
    return file;
  }

  setMode(fileId: string, mode: FileServeMode): void {
    const stored = this.files.get(fileId);
    if (!stored) throw new Error(`no file ${fileId}`);
    stored.mode = mode;
  }

  info(fileId: string): SlackFile | undefined {
    const stored = this.files.get(fileId);
    return stored && stored.mode !== 'deleted' ? stored.file : undefined;
  }

  /** files.getUploadURLExternal */
  startUpload(filename: string, length: number): { upload_url: string; file_id: string } {
    const fileId = this.newFileId();
    this.pending.set(fileId, { fileId, filename, declaredLength: length });
    return { upload_url: `${this.baseUrl()}upload/${fileId}`, file_id: fileId };
  }

  /** files.completeUploadExternal: returns the completed file objects, or an error code. */
  completeUploads(
    entries: Array<{ id: string; title?: string }>,
    channelId: string | undefined,
    threadTs: string | undefined,
    initialComment: string | undefined,
  ): { files: SlackFile[] } | { error: string } {
    const found: PendingUpload[] = [];
    for (const entry of entries) {
      const pending = this.pending.get(entry.id);
      if (!pending?.bytes) return { error: 'file_not_found' };
      found.push(pending);
    }
    const files: SlackFile[] = [];
    entries.forEach((entry, index) => {
      const pending = found[index]!;
      const bytes = pending.bytes!;
      this.pending.delete(entry.id);
      const title = entry.title ?? pending.filename;
      const file = this.describe(pending.fileId, pending.filename, bytes.length, undefined, title, undefined);
      this.files.set(file.id, { file, content: bytes, mode: 'ok' });
      this.uploads.push({
        fileId: pending.fileId,
        filename: pending.filename,
        title,
        channelId,
        threadTs,
        bytes,
        initialComment,
        declaredLength: pending.declaredLength,
      });
      files.push(file);
    });
    this.changed();
    return { files };
  }

  /** POST /upload/<fileId>: raw bytes or multipart/form-data (what @slack/web-api sends). */
  async receiveUpload(fileId: string, request: IncomingMessage, response: ServerResponse): Promise<void> {
    const pending = this.pending.get(fileId);
    const body = await readBody(request);
    if (!pending) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('upload url not found');
      return;
    }
    const contentType = request.headers['content-type'] ?? '';
    pending.bytes = contentType.startsWith('multipart/form-data') ? firstMultipartFile(body, contentType)?.bytes ?? body : body;
    this.changed();
    response.writeHead(200, { 'content-type': 'text/plain' }).end(`OK - ${pending.bytes.length}`);
  }

  /** GET /files-pri/<fileId>/<name>: bytes only with the bot token; otherwise Slack's HTML login page. */
  async serveDownload(fileId: string, request: IncomingMessage, response: ServerResponse): Promise<void> {
    const stored = this.files.get(fileId);
    const authorized = bearerToken(request) === this.botToken;
    const record = (status: number, served: DownloadRecord['served']) => {
      this.downloads.push({ fileId, authorized, status, served });
      this.changed();
    };
    if (!stored || stored.mode === 'deleted') {
      record(404, 'not-found');
      response.writeHead(404, { 'content-type': 'text/html; charset=utf-8' }).end('<!DOCTYPE html><html><body>Not Found</body></html>');
      return;
    }
    if (!authorized || stored.mode === 'login-page') {
      record(200, 'login-page');
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(LOGIN_PAGE_HTML);
      return;
    }
    record(200, 'bytes');
    response.writeHead(200, {
      'content-type': stored.file.mimetype,
      'content-length': String(stored.file.size),
      'content-disposition': `attachment; filename="${encodeURIComponent(stored.file.name)}"`,
    });
    const source = Buffer.isBuffer(stored.content) ? Readable.from([stored.content]) : stored.content();
    await pipeline(source, response).catch(() => {
      // the client went away mid-download (a refused or cancelled upload): nothing to do
    });
  }

  private describe(
    id: string,
    name: string,
    size: number,
    mimetype: string | undefined,
    title: string | undefined,
    user: string | undefined,
  ): SlackFile {
    const extension = /\.([A-Za-z0-9]+)$/.exec(name)?.[1]?.toLowerCase() ?? 'binary';
    const encodedName = encodeURIComponent(name);
    return {
      id,
      name,
      title: title ?? name,
      mimetype: mimetype ?? guessMimetype(extension),
      filetype: extension,
      size,
      user: user ?? 'UUSER',
      created: 1700000000,
      mode: 'hosted',
      is_external: false,
      url_private: `${this.baseUrl()}files-pri/${id}/${encodedName}`,
      url_private_download: `${this.baseUrl()}files-pri/${id}/download/${encodedName}`,
      permalink: `${this.baseUrl()}files/${id}/${encodedName}`,
    };
  }
}

function guessMimetype(extension: string): string {
  const known: Record<string, string> = {
    csv: 'text/csv',
    txt: 'text/plain',
    json: 'application/json',
    png: 'image/png',
    jpg: 'image/jpeg',
    jpeg: 'image/jpeg',
    pdf: 'application/pdf',
    xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  };
  return known[extension] ?? 'application/octet-stream';
}

/**
 * FakeSlack's files.* handlers: files.info, and the two API calls of the streamed upload flow
 * (https://docs.slack.dev/reference/methods/files.getUploadURLExternal, files.completeUploadExternal). `share`
 * stores the message a completed upload posts in its channel.
 */
export function fileHandlers(
  files: FakeSlackFiles,
  share: (message: { channel: string; threadTs?: string; text: string; files: SlackFile[] }) => void,
): Record<string, (args: Record<string, unknown>) => Record<string, unknown>> {
  return {
    'files.info': (args) => {
      const file = files.info(String(args.file));
      return file ? { ok: true, file } : { ok: false, error: 'file_not_found' };
    },
    'files.getUploadURLExternal': (args) => {
      const length = Number(args.length);
      if (!args.filename || !Number.isFinite(length) || length <= 0) return { ok: false, error: 'invalid_arguments' };
      return { ok: true, ...files.startUpload(String(args.filename), length) };
    },
    'files.completeUploadExternal': (args) => {
      const entries = args.files as Array<{ id: string; title?: string }> | undefined;
      if (!Array.isArray(entries) || entries.length === 0) return { ok: false, error: 'invalid_arguments' };
      const channelId = args.channel_id === undefined ? undefined : String(args.channel_id);
      const threadTs = args.thread_ts === undefined ? undefined : String(args.thread_ts);
      const comment = args.initial_comment === undefined ? undefined : String(args.initial_comment);
      const result = files.completeUploads(entries, channelId, threadTs, comment);
      if ('error' in result) return { ok: false, error: result.error };
      if (channelId) share({ channel: channelId, ...(threadTs === undefined ? {} : { threadTs }), text: comment ?? '', files: result.files });
      return { ok: true, files: result.files.map((file) => ({ id: file.id, title: file.title })) };
    },
  };
}
