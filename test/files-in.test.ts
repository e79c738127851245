/**
 * Uploads into a thread's workspace (issue 3): the real WebClient and fetch against FakeSlack, a real
 * LocalWorkspace on disk.
 */

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LogLevel, WebClient } from '@slack/web-api';
import type { SlackFileRef } from '../controller/slack/mention.js';
import { WebSlackThread } from '../controller/slack/slack-thread.js';
import { silentLogger } from '../controller/logger.js';
import { describeUploadsForModel, ingestSlackFiles } from '../controller/slack/file-download.js';
import { candidateName, sanitizeFileName } from '../controller/slack/file-names.js';
import { LocalWorkspaceStore, type LocalWorkspace } from '../controller/workspace/local-workspace.js';
import { FakeSlack, generatedContent } from './fakes/fake-slack.js';

const botToken = 'xoxb-files-in';
const MB = 1024 * 1024;

describe('ingestSlackFiles', () => {
  const slack = new FakeSlack({ botToken, botUserId: 'UBOT', teamId: 'T1' });
  let client: WebClient;
  let dataDir: string;
  let threadCounter = 0;

  beforeAll(async () => {
    await slack.start();
    client = new WebClient(botToken, { slackApiUrl: slack.apiUrl, logLevel: LogLevel.ERROR, retryConfig: { retries: 0 } });
    dataDir = await mkdtemp(join(tmpdir(), 'oi-files-in-'));
  });
  afterAll(() => slack.close());

  function newThread() {
    const threadTs = `1700000100.${String(++threadCounter).padStart(6, '0')}`;
    const workspace = new LocalWorkspaceStore(dataDir).open({ team: 'T1', channel: 'C1', threadTs }) as LocalWorkspace;
    return { threadTs, workspace };
  }

  function ingest(workspace: LocalWorkspace, threadTs: string, files: SlackFileRef[], extra: Partial<Parameters<typeof ingestSlackFiles>[0]> = {}) {
    return ingestSlackFiles({
      thread: new WebSlackThread(client, 'C1', threadTs, silentLogger),
      botToken,
      workspace,
      messageTs: threadTs,
      files,
      eventMayHaveFiles: false,
      maxUploadBytes: 10 * MB,
      workspaceMaxBytes: 2048 * MB,
      logger: silentLogger,
      ...extra,
    });
  }

  /** Every entry of the workspace folder on disk, temporaries and hidden files included. */
  async function onDisk(workspace: LocalWorkspace): Promise<string[]> {
    return (await readdir(workspace.root, { recursive: true }).catch(() => [] as string[])).map(String).sort();
  }

  test('a CSV arrives byte for byte at the workspace root and the model is told where', async () => {
    const { threadTs, workspace } = newThread();
    const csv = 'date,region,amount\n2024-01-01,東京,100\n2024-01-02,大阪,250\n';
    const binary = Buffer.from(Array.from({ length: 70_000 }, (_, index) => (index * 7) % 256));
    const files = [slack.addFile({ name: '売上.csv', content: csv }), slack.addFile({ name: 'blob.bin', content: binary })];
    const result = await ingest(workspace, threadTs, files);
    expect(result.problems).toStrictEqual([]);
    expect(result.saved).toStrictEqual([
      { originalName: '売上.csv', path: '売上.csv', size: Buffer.byteLength(csv), renamed: false },
      { originalName: 'blob.bin', path: 'blob.bin', size: binary.length, renamed: false },
    ]);
    expect(await readFile(join(workspace.root, '売上.csv'), 'utf8')).toBe(csv);
    expect(await readFile(join(workspace.root, 'blob.bin'))).toStrictEqual(binary);
    for (const download of slack.downloads.slice(-2)) expect(download).toMatchObject({ authorized: true, served: 'bytes' });
    expect(describeUploadsForModel(result.saved)).toBe('I uploaded 売上.csv to ./売上.csv (63 bytes)\nI uploaded blob.bin to ./blob.bin (68 KB)');
    expect(describeUploadsForModel([])).toBe('');
  });

  test('names are sanitised: no paths, no control characters, never hidden or internal', async () => {
    const { threadTs, workspace } = newThread();
    const names = ['../../x.csv', '/etc/passwd', 're\u0000po\nrt\u202e.csv', '.oi', '..', 'C:\\Users\\me\\data.tsv'];
    const files = names.map((name, index) => slack.addFile({ name, content: `file ${index}\n` }));
    const result = await ingest(workspace, threadTs, files);
    expect(result.problems).toStrictEqual([]);
    expect(result.saved.map((upload) => upload.path)).toStrictEqual(['x.csv', 'passwd', 'report.csv', 'oi', 'file', 'data.tsv']);
    expect(result.saved.map((upload) => upload.renamed)).toStrictEqual(names.map(() => true));
    expect(await onDisk(workspace)).toStrictEqual(['data.tsv', 'file', 'oi', 'passwd', 'report.csv', 'x.csv']);
    expect(await readdir(dataDir).then((entries) => entries.sort()), 'nothing escaped the workspace').toStrictEqual(['workspaces']);
    expect(await readFile(join(workspace.root, 'x.csv'), 'utf8')).toBe('file 0\n');
    expect(describeUploadsForModel(result.saved)).toMatch(/^I uploaded \.\.\/\.\.\/x\.csv to \.\/x\.csv \(7 bytes\); it was renamed to a safe file name$/m);
  });

  test('sanitizeFileName keeps letters and the extension when it shortens a name', () => {
    expect(sanitizeFileName('レポート 2024.xlsx')).toBe('レポート 2024.xlsx');
    const long = `${'データ'.repeat(100)}.csv`;
    const short = sanitizeFileName(long);
    expect(short).toMatch(/^データ.*\.csv$/);
    expect(Buffer.byteLength(short)).toBeLessThanOrEqual(180);
    expect(sanitizeFileName('   ')).toBe('file');
    expect(candidateName('data.csv.gz', 2)).toBe('data (2).csv.gz');
    expect(candidateName('README', 1)).toBe('README (1)');
  });

  test('an existing name gets a distinct one; nothing is overwritten', async () => {
    const { threadTs, workspace } = newThread();
    await workspace.write('sales.csv', 'old contents\n');
    await workspace.write('sales (1).csv', 'older contents\n');
    const files = [slack.addFile({ name: 'sales.csv', content: 'new A\n' }), slack.addFile({ name: 'sales.csv', content: 'new B\n' })];
    const result = await ingest(workspace, threadTs, files);
    expect(result.saved.map((upload) => [upload.path, upload.renamed])).toStrictEqual([
      ['sales (2).csv', true],
      ['sales (3).csv', true],
    ]);
    expect(await readFile(join(workspace.root, 'sales.csv'), 'utf8')).toBe('old contents\n');
    expect(await readFile(join(workspace.root, 'sales (1).csv'), 'utf8')).toBe('older contents\n');
    expect(await readFile(join(workspace.root, 'sales (2).csv'), 'utf8')).toBe('new A\n');
    expect(await readFile(join(workspace.root, 'sales (3).csv'), 'utf8')).toBe('new B\n');
    expect(describeUploadsForModel(result.saved)).toMatch(/^I uploaded sales\.csv to \.\/sales \(2\)\.csv \(6 bytes\); it was renamed because a file named sales\.csv was already there$/m);
  });

  test('a file over the limit is refused before downloading, and the other files still arrive', async () => {
    const { threadTs, workspace } = newThread();
    const big = slack.addFile({ name: 'huge.csv', content: generatedContent(3 * MB), size: 3 * MB });
    const small = slack.addFile({ name: 'small.csv', content: 'a,b\n1,2\n' });
    const before = slack.downloads.length;
    const result = await ingest(workspace, threadTs, [big, small], { maxUploadBytes: 2 * MB });
    expect(result.problems).toStrictEqual(['huge.csv is 3 MB, over the 2 MB upload limit, so I did not save it.']);
    expect(result.saved.map((upload) => upload.path)).toStrictEqual(['small.csv']);
    expect(slack.downloads.slice(before).map((download) => download.fileId), 'huge.csv was never fetched').toStrictEqual([small.id]);
    expect(await onDisk(workspace)).toStrictEqual(['small.csv']);
  });

  test('an upload that would take the workspace past SANDBOX_WORKSPACE_MAX_MB is refused in one sentence (issue 14)', async () => {
    const { threadTs, workspace } = newThread();
    await workspace.write('kept.bin', Buffer.alloc(2 * MB, 1));
    const big = slack.addFile({ name: 'more.csv', content: generatedContent(2 * MB), size: 2 * MB });
    const small = slack.addFile({ name: 'small.csv', content: 'a,b\n1,2\n' });
    const before = slack.downloads.length;
    const result = await ingest(workspace, threadTs, [big, small], { workspaceMaxBytes: 3 * MB });
    expect(result.problems).toStrictEqual([
      "more.csv (2 MB) was not saved: the thread's workspace holds 2 MB of its 3 MB limit (SANDBOX_WORKSPACE_MAX_MB); " +
        'ask me to delete files you no longer need, then upload it again.',
    ]);
    expect(result.saved.map((upload) => upload.path)).toStrictEqual(['small.csv']);
    expect(slack.downloads.slice(before).map((download) => download.fileId), 'more.csv was never fetched').toStrictEqual([small.id]);
    // Without a size in the event, the stream is cut where the quota ends and nothing of it is kept.
    const unsized = await ingest(workspace, threadTs, [{ ...big, size: undefined }], { workspaceMaxBytes: 3 * MB });
    expect(unsized.problems[0]).toMatch(/^more\.csv \(2 MB\) was not saved|^more\.csv was not saved/);
    expect((await onDisk(workspace)).sort()).toStrictEqual(['kept.bin', 'small.csv']);
  });

  test('a file whose size the event did not tell is refused by its Content-Length', async () => {
    const { threadTs, workspace } = newThread();
    const big = slack.addFile({ name: 'huge.csv', content: generatedContent(3 * MB), size: 3 * MB });
    const result = await ingest(workspace, threadTs, [{ ...big, size: undefined }], { maxUploadBytes: 2 * MB });
    expect(result.problems).toStrictEqual(['huge.csv is 3 MB, over the 2 MB upload limit, so I did not save it.']);
    expect(await onDisk(workspace)).toStrictEqual([]);
  });

  /**
   * A file host beside FakeSlack for what it cannot do: `/chunked` streams 5 MB without Content-Length (as a
   * proxy might), `/broken` announces 5 MB and drops the connection after 1 MB.
   */
  async function withOddHost(run: (baseUrl: string) => Promise<void>): Promise<void> {
    const host = createServer((request, response) => {
      if (request.headers.authorization !== `Bearer ${botToken}`) return void response.writeHead(403).end();
      if (request.url?.startsWith('/chunked')) {
        response.writeHead(200, { 'content-type': 'text/csv' });
        generatedContent(5 * MB)().pipe(response);
        return;
      }
      response.writeHead(200, { 'content-type': 'text/csv', 'content-length': String(5 * MB) });
      response.write(Buffer.alloc(MB, 'a'), () => response.destroy());
    });
    await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
    try {
      await run(`http://127.0.0.1:${(host.address() as AddressInfo).port}`);
    } finally {
      host.closeAllConnections();
      await new Promise<void>((resolve) => host.close(() => resolve()));
    }
  }

  test('a download that sends more bytes than allowed without a length is cut off and leaves nothing', async () => {
    await withOddHost(async (baseUrl) => {
      const { threadTs, workspace } = newThread();
      const file = { id: 'FSTREAM', name: 'stream.csv', url_private_download: `${baseUrl}/chunked/stream.csv` };
      const result = await ingest(workspace, threadTs, [file], { maxUploadBytes: 1 * MB });
      expect(result.saved).toStrictEqual([]);
      expect(result.problems).toStrictEqual(['stream.csv is larger than the 1 MB upload limit, so I did not save it.']);
      expect(await onDisk(workspace), 'no partial file stays behind').toStrictEqual([]);
    });
  });

  test('a download cut off midway is told as interrupted and leaves nothing', async () => {
    await withOddHost(async (baseUrl) => {
      const { threadTs, workspace } = newThread();
      const file = { id: 'FBROKEN', name: 'broken.csv', url_private_download: `${baseUrl}/broken/broken.csv` };
      const result = await ingest(workspace, threadTs, [file]);
      expect(result).toStrictEqual({ saved: [], problems: ['The download of broken.csv from Slack was interrupted. Please try again.'] });
      expect(await onDisk(workspace)).toStrictEqual([]);
    });
  });

  test("Slack's HTML login page is recognised (by content type or by content) and nothing is kept", async () => {
    const { threadTs, workspace } = newThread();
    const report = slack.addFile({ name: 'report.csv', content: 'a,b\n1,2\n', mode: 'login-page' });
    const disguised = slack.addFile({ name: 'table.csv', content: '\n  <!DOCTYPE html><html><body>Sign in</body></html>', mimetype: 'text/csv' });
    const page = slack.addFile({ name: 'page.html', content: '<!DOCTYPE html><html><body>mine</body></html>', mimetype: 'text/html' });
    const result = await ingest(workspace, threadTs, [report, disguised, page]);
    expect(result.problems).toHaveLength(2);
    expect(result.problems[0] ?? '').toMatch(/^Slack did not let me download report\.csv \(the app may be missing the files:read scope\)/);
    expect(result.problems[1] ?? '').toMatch(/^Slack did not let me download table\.csv /);
    expect(result.saved.map((upload) => upload.path), 'a real HTML upload is kept').toStrictEqual(['page.html']);
    expect(await onDisk(workspace)).toStrictEqual(['page.html']);
  });

  test('the bot token is what makes Slack serve the bytes', async () => {
    const { threadTs, workspace } = newThread();
    const file = slack.addFile({ name: 'data.csv', content: 'a\n1\n' });
    const result = await ingest(workspace, threadTs, [file], { botToken: 'xoxb-not-the-right-one' });
    expect(result.problems[0] ?? '').toMatch(/files:read/);
    expect(slack.downloads.at(-1)?.authorized).toBe(false);
    expect(await onDisk(workspace)).toStrictEqual([]);
  });

  test('a deleted file (404) is told clearly and the next file still arrives', async () => {
    const { threadTs, workspace } = newThread();
    const gone = slack.addFile({ name: 'gone.csv', content: 'x\n', mode: 'deleted' });
    const kept = slack.addFile({ name: 'kept.csv', content: 'y\n' });
    const result = await ingest(workspace, threadTs, [gone, kept]);
    expect(result.problems).toStrictEqual(['gone.csv was not found on Slack (it may have been deleted), so I could not read it.']);
    expect(result.saved.map((upload) => upload.path)).toStrictEqual(['kept.csv']);
    expect(await onDisk(workspace)).toStrictEqual(['kept.csv']);
  });

  test('files missing from the event are found by re-reading that message, even deep in a long thread', async () => {
    const { threadTs, workspace } = newThread();
    const file = slack.addFile({ name: 'late.csv', content: 'late,1\n' });
    // The fake answers conversations.replies with Slack's window and paging: only oldest = latest = the
    // message's ts with inclusive finds it among 16 replies (the bot asks for 10 messages and does not page).
    const replyTs = (index: number) => `${threadTs.slice(0, -3)}${String(100 + index)}`;
    slack.seedMessage({ channel: 'C1', ts: threadTs, user: 'U1', text: 'parent' });
    for (let index = 0; index < 12; index++) slack.seedMessage({ channel: 'C1', ts: replyTs(index), thread_ts: threadTs, user: 'U2', text: `reply ${index}` });
    const messageTs = replyTs(12);
    slack.seedMessage({ channel: 'C1', ts: messageTs, thread_ts: threadTs, user: 'U1', text: '<@UBOT>', files: [file] });
    for (let index = 13; index < 16; index++) slack.seedMessage({ channel: 'C1', ts: replyTs(index), thread_ts: threadTs, user: 'U2', text: `reply ${index}` });

    const ignored = await ingest(workspace, threadTs, [], { messageTs });
    expect(ignored, 'no hint, no extra call').toStrictEqual({ saved: [], problems: [] });

    const repliesBefore = slack.callsTo('conversations.replies').length;
    const result = await ingest(workspace, threadTs, [], { messageTs, eventMayHaveFiles: true });
    expect(slack.callsTo('conversations.replies')).toHaveLength(repliesBefore + 1);
    expect(result).toStrictEqual({ saved: [{ originalName: 'late.csv', path: 'late.csv', size: 7, renamed: false }], problems: [] });
    expect(await readFile(join(workspace.root, 'late.csv'), 'utf8')).toBe('late,1\n');
  });

  test('the bot token is never sent to a host that is not Slack', async () => {
    const { threadTs, workspace } = newThread();
    const file = { id: 'FEVIL', name: 'evil.csv', url_private_download: 'http://files.example.test/steal.csv' };
    const result = await ingest(workspace, threadTs, [file]);
    expect(result).toStrictEqual({ saved: [], problems: ['evil.csv is not stored on Slack, so I did not download it; please attach the file itself.'] });
  });

  test('a file given only by id is completed with files.info', async () => {
    const { threadTs, workspace } = newThread();
    const file = slack.addFile({ name: 'by-id.txt', content: 'hello\n' });
    const result = await ingest(workspace, threadTs, [{ id: file.id }]);
    expect(result.problems).toStrictEqual([]);
    expect(result.saved.map((upload) => upload.path)).toStrictEqual(['by-id.txt']);
    expect(slack.callsTo('files.info').at(-1)?.args.file).toBe(file.id);
    expect(slack.unexpected).toStrictEqual([]);
  });
});
