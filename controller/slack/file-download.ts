import { Readable } from 'node:stream';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { uploadRefusal, workspaceBytes } from '../workspace/quota.js';
import { UnsafePathError, type Workspace } from '../workspace/workspace.js';
import { formatBytes } from '../text.js';
import { candidateName, sanitizeFileName } from './file-names.js';
import type { SlackFileRef } from './mention.js';
import type { SlackThread } from './slack-thread.js';

/**
 * Files attached to a mention, into the thread's workspace root (issue 3). Each file is streamed from
 * Slack straight into `workspace.write` (a 500 MB CSV never sits in memory) with the bot token; the
 * workspace write is atomic, so a refused or broken download leaves nothing behind. One file failing
 * never stops the others: each failure becomes one sentence for the thread.
 */

export interface SavedUpload {
  originalName: string;
  path: string;
  size: number;
  renamed: boolean;
}

export interface IngestResult {
  saved: SavedUpload[];
  /** One clear sentence each, shown in the thread. */
  problems: string[];
}

export interface IngestOptions {
  /** The thread the message is in. */
  thread: SlackThread;
  botToken: string;
  workspace: Workspace;
  messageTs: string;
  /** From the event; may be missing even though the message has files. */
  files: SlackFileRef[];
  /** The event hints at files it did not include: re-read the message with conversations.replies. */
  eventMayHaveFiles: boolean;
  maxUploadBytes: number;
  /** SANDBOX_WORKSPACE_MAX_MB: an upload that would take the workspace past it is refused. */
  workspaceMaxBytes: number;
  logger: Logger;
}

/** What the thread's workspace holds and may hold (SANDBOX_WORKSPACE_MAX_MB). */
interface Quota {
  used: number;
  max: number;
}

/** Attempts at a free name when a folder or link the listing could not see is in the way. */
const MAX_NAME_ATTEMPTS = 3;

const SLACK_HOSTS = ['slack.com', 'slack-gov.com'];

/** A download that went wrong in a way the user should be told about, in one sentence. */
class DownloadProblem extends Error {}

export async function ingestSlackFiles(options: IngestOptions): Promise<IngestResult> {
  const problems: string[] = [];
  const saved: SavedUpload[] = [];
  const files = await resolveFiles(options, problems);
  if (files.length === 0) return { saved, problems };
  const taken = await takenNames(options.workspace);
  const quota = { used: await workspaceBytes(options.workspace), max: options.workspaceMaxBytes };
  for (const file of files) {
    const name = displayName(file);
    try {
      const upload = await ingestOne(options, file, name, taken, quota);
      quota.used += upload.size;
      saved.push(upload);
      options.logger.info('upload saved', { fileId: file.id, bytes: upload.size, renamed: upload.renamed });
    } catch (error) {
      if (error instanceof DownloadProblem) {
        problems.push(error.message);
        options.logger.warn('upload refused', { fileId: file.id, reason: error.message });
      } else {
        problems.push(`I could not save ${name} into this thread's files because of an error on my side.`);
        options.logger.error('upload failed', { fileId: file.id, error: describeError(error) });
      }
    }
  }
  return { saved, problems };
}

/**
 * One line per file for the model, e.g. `I uploaded sales.csv to ./sales.csv (12 KB)`; '' when none. `sharedBy`
 * names someone else who shared the files in the thread (`<@U2>`).
 */
export function describeUploadsForModel(saved: SavedUpload[], sharedBy?: string): string {
  const who = sharedBy === undefined ? 'I uploaded' : `${sharedBy} shared`;
  return saved
    .map((upload) => {
      const line = `${who} ${upload.originalName} to ./${upload.path} (${formatBytes(upload.size)})`;
      if (!upload.renamed) return line;
      const safeName = sanitizeFileName(upload.originalName);
      return upload.path === safeName
        ? `${line}; it was renamed to a safe file name`
        : `${line}; it was renamed because a file named ${safeName} was already there`;
    })
    .join('\n');
}

async function ingestOne(options: IngestOptions, file: SlackFileRef, name: string, taken: Set<string>, quota: Quota): Promise<SavedUpload> {
  const url = file.url_private_download ?? file.url_private;
  if (file.mode === 'tombstone') throw new DownloadProblem(`${name} was deleted from Slack before I could read it.`);
  if (file.mode === 'hidden_by_limit') {
    throw new DownloadProblem(`Slack hides ${name} (the workspace is over its file storage limit), so I could not read it.`);
  }
  if (file.mode === 'external') {
    throw new DownloadProblem(`${name} is a link to a file stored outside Slack; please attach the file itself.`);
  }
  if (url === undefined) {
    throw new DownloadProblem(`Slack gave me no download link for ${name} (the app may be missing the files:read scope).`);
  }
  if (!mayReceiveToken(url, options.thread.apiUrl)) {
    throw new DownloadProblem(`${name} is not stored on Slack, so I did not download it; please attach the file itself.`);
  }
  if (file.size !== undefined && file.size > options.maxUploadBytes) throw tooLarge(name, file.size, options.maxUploadBytes);
  const refusal = file.size === undefined ? undefined : uploadRefusal(name, file.size, quota.used, quota.max);
  if (refusal !== undefined) throw new DownloadProblem(refusal);

  const base = sanitizeFileName(file.name ?? file.title ?? 'file');
  let attempt = 0;
  for (let tries = 1; ; tries++) {
    while (taken.has(candidateName(base, attempt))) attempt++;
    const path = candidateName(base, attempt);
    taken.add(path);
    try {
      const entry = await download(options, file, url, name, path, quota);
      const originalName = withoutControlCharacters(file.name ?? file.title ?? 'file');
      return { originalName, path, size: entry.size, renamed: path !== originalName };
    } catch (error) {
      // A folder or symbolic link with this name (invisible to list()) is in the way: try the next name.
      if (!(error instanceof UnsafePathError) || tries >= MAX_NAME_ATTEMPTS) throw error;
    }
  }
}

async function download(options: IngestOptions, file: SlackFileRef, url: string, name: string, path: string, quota: Quota) {
  const abort = new AbortController();
  try {
    let response: Response;
    try {
      response = await fetch(url, { headers: { Authorization: `Bearer ${options.botToken}` }, signal: abort.signal });
    } catch (error) {
      options.logger.warn('upload download failed', { fileId: file.id, error: describeError(error) });
      throw new DownloadProblem(`I could not download ${name} from Slack (the connection failed). Please try again.`);
    }
    if (response.status === 404 || response.status === 410) {
      throw new DownloadProblem(`${name} was not found on Slack (it may have been deleted), so I could not read it.`);
    }
    if (response.status === 401 || response.status === 403) {
      throw new DownloadProblem(`Slack refused to let me download ${name} (the app may be missing the files:read scope).`);
    }
    if (!response.ok || response.body === null) {
      throw new DownloadProblem(`I could not download ${name} from Slack (it answered HTTP ${response.status}). Please try again.`);
    }
    const expectsHtml = isHtmlFile(file);
    if (!expectsHtml && /^\s*text\/html/i.test(response.headers.get('content-type') ?? '')) throw loginPage(name);
    const declared = Number(response.headers.get('content-length') ?? NaN);
    if (declared > options.maxUploadBytes) throw tooLarge(name, declared, options.maxUploadBytes);
    if (declared > quota.max - quota.used) throw new DownloadProblem(uploadRefusal(name, declared, quota.used, quota.max)!);

    const body = Readable.from(guardedBytes(response.body, { name, expectsHtml, maxBytes: options.maxUploadBytes, quota }));
    return await options.workspace.write(path, body);
  } finally {
    abort.abort(); // stops the transfer when we gave up early; a no-op after a complete download
  }
}

/**
 * The response body, checked on the way: refuses more bytes than allowed and Slack's HTML login page
 * (served with a 200 when the token may not read the file). Throwing makes the workspace write fail,
 * and the workspace then removes its partial file.
 */
async function* guardedBytes(
  body: ReadableStream<Uint8Array>,
  check: { name: string; expectsHtml: boolean; maxBytes: number; quota: Quota },
): AsyncGenerator<Buffer> {
  let received = 0;
  let head: Buffer | undefined = Buffer.alloc(0); // kept until we have seen enough bytes to judge the start
  const chunks = (body as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Uint8Array>;
    try {
      next = await chunks.next();
    } catch {
      // the connection broke or stalled (undici's body timeout): the user can simply try again
      throw new DownloadProblem(`The download of ${check.name} from Slack was interrupted. Please try again.`);
    }
    if (next.done) break;
    const chunk = next.value;
    received += chunk.byteLength;
    if (received > check.maxBytes) throw tooLarge(check.name, undefined, check.maxBytes);
    if (received > check.quota.max - check.quota.used) throw new DownloadProblem(uploadRefusal(check.name, undefined, check.quota.used, check.quota.max)!);
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (head === undefined) {
      yield bytes;
      continue;
    }
    head = Buffer.concat([head, bytes]);
    if (head.length < 64) continue;
    if (!check.expectsHtml && looksLikeHtml(head)) throw loginPage(check.name);
    yield head;
    head = undefined;
  }
  if (head !== undefined && head.length > 0) {
    if (!check.expectsHtml && looksLikeHtml(head)) throw loginPage(check.name);
    yield head;
  }
}

/**
 * The bot token goes only to Slack's own hosts (or the host SLACK_API_URL points at: tests, proxies),
 * never to wherever a file object's URL happens to lead.
 */
function mayReceiveToken(url: string, apiUrl: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return false;
  }
  if (SLACK_HOSTS.some((domain) => host === domain || host.endsWith(`.${domain}`))) return true;
  try {
    return host === new URL(apiUrl).hostname;
  } catch {
    return false;
  }
}

function looksLikeHtml(head: Buffer): boolean {
  const start = head.subarray(0, 256).toString('utf8').replace(/^\uFEFF/, '').trimStart().toLowerCase();
  return start.startsWith('<!doctype html') || start.startsWith('<html');
}

function isHtmlFile(file: SlackFileRef): boolean {
  return /^text\/html/i.test(file.mimetype ?? '') || /\.x?html?$/i.test(file.name ?? '');
}

function loginPage(name: string): DownloadProblem {
  return new DownloadProblem(
    `Slack did not let me download ${name} (the app may be missing the files:read scope); ask the person who installed me to check it, then upload the file again.`,
  );
}

/** `bytes` undefined: the size is unknown, only that more arrived than allowed. */
function tooLarge(name: string, bytes: number | undefined, maxBytes: number): DownloadProblem {
  const size = bytes === undefined ? 'larger than' : `${formatBytes(bytes)}, over`;
  return new DownloadProblem(`${name} is ${size} the ${formatBytes(maxBytes)} upload limit, so I did not save it.`);
}

/** The event's files, completed from the message itself (conversations.replies) and files.info when they lack details. */
async function resolveFiles(options: IngestOptions, problems: string[]): Promise<SlackFileRef[]> {
  let files = options.files;
  if (options.eventMayHaveFiles && (files.length === 0 || files.some(lacksUrl))) {
    try {
      const found = await options.thread.messageFiles(options.messageTs);
      if (found.length > 0) files = found;
    } catch (error) {
      options.logger.warn('could not re-read the message for its files', { error: describeError(error) });
      if (files.length === 0) {
        problems.push('I could not read the files attached to your message from Slack; please try attaching them again.');
      }
    }
  }
  return Promise.all(
    files.map(async (file) => {
      if (!lacksUrl(file) || file.mode === 'tombstone' || file.mode === 'external') return file;
      try {
        return { ...file, ...(await options.thread.fileInfo(file.id)) };
      } catch (error) {
        options.logger.warn('files.info failed', { fileId: file.id, error: describeError(error) });
        return file;
      }
    }),
  );
}

function lacksUrl(file: SlackFileRef): boolean {
  return file.url_private_download === undefined && file.url_private === undefined;
}

/** Names at the workspace root that are taken: files, and folders that hold files. */
async function takenNames(workspace: Workspace): Promise<Set<string>> {
  const entries = await workspace.list({ includeInternal: true });
  return new Set(entries.map((entry) => entry.path.split('/')[0] ?? entry.path));
}

/** The file's name as the user knows it, made safe to show in a Slack message. */
function displayName(file: SlackFileRef): string {
  const name = withoutControlCharacters(file.name ?? file.title ?? '').slice(0, 200);
  return name.trim() === '' ? 'the file' : name;
}

function withoutControlCharacters(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are removed before a name is shown
  return text.replace(/[\u0000-\u001f\u007f]/g, '');
}
