import { Readable } from 'node:stream';
import type { WebClient } from '@slack/web-api';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * Streams files into a thread with Slack's upload flow (files.getUploadURLExternal, the bytes to the upload
 * URL, files.completeUploadExternal: https://api.slack.com/messaging/files#uploading_files): the same three
 * calls `files.uploadV2` makes, done here because uploadV2 reads every file whole into memory first; this
 * streams each file from its source, so sharing a 500 MB CSV back does not cost 500 MB of controller memory.
 * The two API calls go through the WebClient, which waits and retries on 429. Several files in one call share
 * one message.
 */

/** Slack refuses files over 1 GB. */
const SLACK_MAX_FILE_BYTES = 1024 * 1024 * 1024;
export const TOO_LARGE_FOR_SLACK = 'larger than the 1 GB Slack accepts';
/** The file could not be opened (a name the workspace refuses to read, or it is gone): trying again will not help. */
export const CANNOT_READ = 'it could not be read from the workspace';

export interface UploadSource {
  /** Shown in Slack under the file (a workspace path, so sub-folders stay visible); the key in UploadOutcome. */
  title: string;
  filename: string;
  size: number;
  open(): Promise<Readable>;
}

/** An in-memory file (an answer, a notebook, a table) as an upload source: the same streamed path as workspace files. */
export function bufferSource(filename: string, content: Buffer, title = filename): UploadSource {
  return { title, filename, size: content.length, open: async () => Readable.from([content]) };
}

/** Uploads one file and throws when Slack did not take it (for files whose loss must fail the caller). */
export async function uploadOrThrow(upload: (files: UploadSource[]) => Promise<UploadOutcome>, file: UploadSource): Promise<void> {
  const outcome = await upload([file]);
  const reason = outcome.failed.get(file.title);
  if (reason !== undefined) throw new Error(`${file.filename} was not posted: ${reason}`);
}

export interface UploadOutcome {
  /** Titles of the files posted. */
  posted: string[];
  /** Title -> a short reason for the user. */
  failed: Map<string, string>;
}

export async function uploadStreams(options: {
  client: WebClient;
  channel: string;
  threadTs: string;
  files: UploadSource[];
  initialComment?: string | undefined;
  logger: Logger;
}): Promise<UploadOutcome> {
  const { client, logger } = options;
  const failed = new Map<string, string>();
  const ready: Array<{ id: string; title: string }> = [];
  for (const file of options.files) {
    if (file.size > SLACK_MAX_FILE_BYTES) {
      failed.set(file.title, TOO_LARGE_FOR_SLACK);
      continue;
    }
    let data: Readable;
    try {
      data = await file.open();
    } catch (error) {
      logger.warn('file to upload could not be opened', { bytes: file.size, error: describeError(error) });
      failed.set(file.title, CANNOT_READ);
      continue;
    }
    try {
      const target = await client.files.getUploadURLExternal({ filename: file.filename, length: file.size });
      if (!target.upload_url || !target.file_id) throw new Error('files.getUploadURLExternal returned no upload URL');
      await sendBytes(target.upload_url, data, file.size);
      ready.push({ id: target.file_id, title: file.title });
    } catch (error) {
      data.destroy();
      logger.warn('file upload to Slack failed', { bytes: file.size, error: describeError(error) });
      failed.set(file.title, 'the upload failed');
    }
  }
  const [first, ...rest] = ready;
  if (first === undefined) return { posted: [], failed };
  try {
    await client.files.completeUploadExternal({
      files: [first, ...rest].map(({ id, title }) => ({ id, title })) as [{ id: string; title: string }],
      channel_id: options.channel,
      thread_ts: options.threadTs,
      ...(options.initialComment === undefined ? {} : { initial_comment: options.initialComment }),
    });
  } catch (error) {
    logger.warn('files.completeUploadExternal failed', { files: ready.length, error: describeError(error) });
    for (const file of ready) failed.set(file.title, 'Slack did not accept the upload');
    return { posted: [], failed };
  }
  return { posted: ready.map((file) => file.title), failed };
}

/** POSTs the raw bytes to the upload URL (Slack accepts raw bytes or multipart); streamed, never buffered. */
async function sendBytes(url: string, data: Readable, size: number): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    body: Readable.toWeb(data) as ReadableStream<Uint8Array>,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    duplex: 'half',
  } as RequestInit & { duplex: 'half' }).finally(() => data.destroy());
  await response.arrayBuffer().catch(() => undefined); // drain the short answer so the connection is reused
  if (response.status !== 200) throw new Error(`the upload URL answered HTTP ${response.status}`);
}
