/**
 * Uploads into a thread's workspace (issue 3): the real WebClient and fetch against FakeSlack, a real
 * LocalWorkspace on disk.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LogLevel, WebClient } from '@slack/web-api';
import type { SlackFileRef } from '../controller/bot.js';
import { silentLogger } from '../controller/logger.js';
import { describeUploadsForModel, ingestSlackFiles } from '../controller/slack/files-in.js';
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

  before(async () => {
    await slack.start();
    client = new WebClient(botToken, { slackApiUrl: slack.apiUrl, logLevel: LogLevel.ERROR, retryConfig: { retries: 0 } });
    dataDir = await mkdtemp(join(tmpdir(), 'oi-files-in-'));
  });
  after(() => slack.close());

  function newThread() {
    const threadTs = `1700000100.${String(++threadCounter).padStart(6, '0')}`;
    const workspace = new LocalWorkspaceStore(dataDir).open({ team: 'T1', channel: 'C1', threadTs }) as LocalWorkspace;
    return { threadTs, workspace };
  }

  function ingest(workspace: LocalWorkspace, threadTs: string, files: SlackFileRef[], extra: Partial<Parameters<typeof ingestSlackFiles>[0]> = {}) {
    return ingestSlackFiles({
      client,
      botToken,
      workspace,
      channel: 'C1',
      messageTs: threadTs,
      threadTs,
      files,
      eventMayHaveFiles: false,
      maxUploadBytes: 10 * MB,
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
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.saved, [
      { originalName: '売上.csv', path: '売上.csv', size: Buffer.byteLength(csv), renamed: false },
      { originalName: 'blob.bin', path: 'blob.bin', size: binary.length, renamed: false },
    ]);
    assert.equal(await readFile(join(workspace.root, '売上.csv'), 'utf8'), csv);
    assert.ok((await readFile(join(workspace.root, 'blob.bin'))).equals(binary));
    assert.ok(slack.downloads.slice(-2).every((download) => download.authorized && download.served === 'bytes'));
    assert.equal(describeUploadsForModel(result.saved), 'I uploaded 売上.csv to ./売上.csv (63 bytes)\nI uploaded blob.bin to ./blob.bin (68 KB)');
    assert.equal(describeUploadsForModel([]), '');
  });

  test('names are sanitised: no paths, no control characters, never hidden or internal', async () => {
    const { threadTs, workspace } = newThread();
    const names = ['../../x.csv', '/etc/passwd', 're\u0000po\nrt\u202e.csv', '.oi', '..', 'C:\\Users\\me\\data.tsv'];
    const files = names.map((name, index) => slack.addFile({ name, content: `file ${index}\n` }));
    const result = await ingest(workspace, threadTs, files);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(
      result.saved.map((upload) => upload.path),
      ['x.csv', 'passwd', 'report.csv', 'oi', 'file', 'data.tsv'],
    );
    assert.ok(result.saved.every((upload) => upload.renamed));
    assert.deepEqual(await onDisk(workspace), ['data.tsv', 'file', 'oi', 'passwd', 'report.csv', 'x.csv']);
    assert.deepEqual(await readdir(dataDir).then((entries) => entries.sort()), ['workspaces'], 'nothing escaped the workspace');
    assert.equal(await readFile(join(workspace.root, 'x.csv'), 'utf8'), 'file 0\n');
    assert.match(describeUploadsForModel(result.saved), /^I uploaded \.\.\/\.\.\/x\.csv to \.\/x\.csv \(7 bytes\); it was renamed to a safe file name$/m);
  });

  test('sanitizeFileName keeps letters and the extension when it shortens a name', () => {
    assert.equal(sanitizeFileName('レポート 2024.xlsx'), 'レポート 2024.xlsx');
    const long = `${'データ'.repeat(100)}.csv`;
    const short = sanitizeFileName(long);
    assert.ok(short.endsWith('.csv') && short.startsWith('データ'));
    assert.ok(Buffer.byteLength(short) <= 180, `${Buffer.byteLength(short)} bytes`);
    assert.equal(sanitizeFileName('   '), 'file');
    assert.equal(candidateName('data.csv.gz', 2), 'data (2).csv.gz');
    assert.equal(candidateName('README', 1), 'README (1)');
  });

  test('an existing name gets a distinct one; nothing is overwritten', async () => {
    const { threadTs, workspace } = newThread();
    await workspace.write('sales.csv', 'old contents\n');
    await workspace.write('sales (1).csv', 'older contents\n');
    const files = [slack.addFile({ name: 'sales.csv', content: 'new A\n' }), slack.addFile({ name: 'sales.csv', content: 'new B\n' })];
    const result = await ingest(workspace, threadTs, files);
    assert.deepEqual(
      result.saved.map((upload) => [upload.path, upload.renamed]),
      [
        ['sales (2).csv', true],
        ['sales (3).csv', true],
      ],
    );
    assert.equal(await readFile(join(workspace.root, 'sales.csv'), 'utf8'), 'old contents\n');
    assert.equal(await readFile(join(workspace.root, 'sales (1).csv'), 'utf8'), 'older contents\n');
    assert.equal(await readFile(join(workspace.root, 'sales (2).csv'), 'utf8'), 'new A\n');
    assert.equal(await readFile(join(workspace.root, 'sales (3).csv'), 'utf8'), 'new B\n');
    assert.match(
      describeUploadsForModel(result.saved),
      /^I uploaded sales\.csv to \.\/sales \(2\)\.csv \(6 bytes\); it was renamed because a file named sales\.csv was already there$/m,
    );
  });

  test('a file over the limit is refused before downloading, and the other files still arrive', async () => {
    const { threadTs, workspace } = newThread();
    const big = slack.addFile({ name: 'huge.csv', content: generatedContent(3 * MB), size: 3 * MB });
    const small = slack.addFile({ name: 'small.csv', content: 'a,b\n1,2\n' });
    const before = slack.downloads.length;
    const result = await ingest(workspace, threadTs, [big, small], { maxUploadBytes: 2 * MB });
    assert.deepEqual(result.problems, ['huge.csv is 3 MB, over the 2 MB upload limit, so I did not save it.']);
    assert.deepEqual(result.saved.map((upload) => upload.path), ['small.csv']);
    assert.deepEqual(slack.downloads.slice(before).map((download) => download.fileId), [small.id], 'huge.csv was never fetched');
    assert.deepEqual(await onDisk(workspace), ['small.csv']);
  });

  test('a file whose size the event did not tell is refused by its Content-Length', async () => {
    const { threadTs, workspace } = newThread();
    const big = slack.addFile({ name: 'huge.csv', content: generatedContent(3 * MB), size: 3 * MB });
    const result = await ingest(workspace, threadTs, [{ ...big, size: undefined }], { maxUploadBytes: 2 * MB });
    assert.deepEqual(result.problems, ['huge.csv is 3 MB, over the 2 MB upload limit, so I did not save it.']);
    assert.deepEqual(await onDisk(workspace), []);
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
      assert.equal(result.saved.length, 0);
      assert.deepEqual(result.problems, ['stream.csv is larger than the 1 MB upload limit, so I did not save it.']);
      assert.deepEqual(await onDisk(workspace), [], 'no partial file stays behind');
    });
  });

  test('a download cut off midway is told as interrupted and leaves nothing', async () => {
    await withOddHost(async (baseUrl) => {
      const { threadTs, workspace } = newThread();
      const file = { id: 'FBROKEN', name: 'broken.csv', url_private_download: `${baseUrl}/broken/broken.csv` };
      const result = await ingest(workspace, threadTs, [file]);
      assert.deepEqual(result, { saved: [], problems: ['The download of broken.csv from Slack was interrupted. Please try again.'] });
      assert.deepEqual(await onDisk(workspace), []);
    });
  });

  test("Slack's HTML login page is recognised (by content type or by content) and nothing is kept", async () => {
    const { threadTs, workspace } = newThread();
    const report = slack.addFile({ name: 'report.csv', content: 'a,b\n1,2\n', mode: 'login-page' });
    const disguised = slack.addFile({ name: 'table.csv', content: '\n  <!DOCTYPE html><html><body>Sign in</body></html>', mimetype: 'text/csv' });
    const page = slack.addFile({ name: 'page.html', content: '<!DOCTYPE html><html><body>mine</body></html>', mimetype: 'text/html' });
    const result = await ingest(workspace, threadTs, [report, disguised, page]);
    assert.equal(result.problems.length, 2);
    assert.match(result.problems[0] ?? '', /^Slack did not let me download report\.csv \(the app may be missing the files:read scope\)/);
    assert.match(result.problems[1] ?? '', /^Slack did not let me download table\.csv /);
    assert.deepEqual(result.saved.map((upload) => upload.path), ['page.html'], 'a real HTML upload is kept');
    assert.deepEqual(await onDisk(workspace), ['page.html']);
  });

  test('the bot token is what makes Slack serve the bytes', async () => {
    const { threadTs, workspace } = newThread();
    const file = slack.addFile({ name: 'data.csv', content: 'a\n1\n' });
    const result = await ingest(workspace, threadTs, [file], { botToken: 'xoxb-not-the-right-one' });
    assert.match(result.problems[0] ?? '', /files:read/);
    assert.equal(slack.downloads.at(-1)?.authorized, false);
    assert.deepEqual(await onDisk(workspace), []);
  });

  test('a deleted file (404) is told clearly and the next file still arrives', async () => {
    const { threadTs, workspace } = newThread();
    const gone = slack.addFile({ name: 'gone.csv', content: 'x\n', mode: 'deleted' });
    const kept = slack.addFile({ name: 'kept.csv', content: 'y\n' });
    const result = await ingest(workspace, threadTs, [gone, kept]);
    assert.deepEqual(result.problems, ['gone.csv was not found on Slack (it may have been deleted), so I could not read it.']);
    assert.deepEqual(result.saved.map((upload) => upload.path), ['kept.csv']);
    assert.deepEqual(await onDisk(workspace), ['kept.csv']);
  });

  test('files missing from the event are found by re-reading the message', async () => {
    const { threadTs, workspace } = newThread();
    const file = slack.addFile({ name: 'late.csv', content: 'late,1\n' });
    slack.seedMessage({ channel: 'C1', ts: threadTs, user: 'U1', text: 'parent' });
    const messageTs = `${threadTs.slice(0, -3)}999`;
    slack.seedMessage({ channel: 'C1', ts: messageTs, thread_ts: threadTs, user: 'U1', text: '<@UBOT>', files: [file] });

    const ignored = await ingest(workspace, threadTs, [], { messageTs });
    assert.deepEqual(ignored, { saved: [], problems: [] }, 'no hint, no extra call');

    const repliesBefore = slack.callsTo('conversations.replies').length;
    const result = await ingest(workspace, threadTs, [], { messageTs, eventMayHaveFiles: true });
    assert.equal(slack.callsTo('conversations.replies').length, repliesBefore + 1);
    assert.deepEqual(result.saved.map((upload) => upload.path), ['late.csv']);
    assert.equal(await readFile(join(workspace.root, 'late.csv'), 'utf8'), 'late,1\n');
  });

  test('the bot token is never sent to a host that is not Slack', async () => {
    const { threadTs, workspace } = newThread();
    const file = { id: 'FEVIL', name: 'evil.csv', url_private_download: 'http://files.example.test/steal.csv' };
    const result = await ingest(workspace, threadTs, [file]);
    assert.deepEqual(result, { saved: [], problems: ['evil.csv is not stored on Slack, so I did not download it; please attach the file itself.'] });
  });

  test('a file given only by id is completed with files.info', async () => {
    const { threadTs, workspace } = newThread();
    const file = slack.addFile({ name: 'by-id.txt', content: 'hello\n' });
    const result = await ingest(workspace, threadTs, [{ id: file.id }]);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.saved.map((upload) => upload.path), ['by-id.txt']);
    assert.equal(slack.callsTo('files.info').at(-1)?.args.file, file.id);
    assert.deepEqual(slack.unexpected, []);
  });
});
