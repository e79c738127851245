/**
 * Files back into the thread (issue 3): automatic sharing after a turn and the `download` command,
 * with the real WebClient against FakeSlack and a real LocalWorkspace on disk.
 */

import { mkdir, mkdtemp, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LogLevel, WebClient } from '@slack/web-api';
import { silentLogger } from '../controller/logger.js';
import { WebSlackThread } from '../controller/slack/slack-thread.js';
import { runDownloadCommand } from '../controller/turn/commands/download.js';
import { shareTurnFiles } from '../controller/turn/share-turn-files.js';
import { LocalWorkspaceStore, type LocalWorkspace } from '../controller/workspace/local-workspace.js';
import { FakeSlack } from './fakes/fake-slack.js';

const botToken = 'xoxb-files-out';
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');

describe('sharing workspace files into the thread', () => {
  const slack = new FakeSlack({ botToken, botUserId: 'UBOT', teamId: 'T1' });
  let client: WebClient;
  let store: LocalWorkspaceStore;
  let threadCounter = 0;

  beforeAll(async () => {
    await slack.start();
    // On 429 the client waits for Retry-After, then retries (quick backoff here to keep the test short).
    client = new WebClient(botToken, { slackApiUrl: slack.apiUrl, logLevel: LogLevel.ERROR, retryConfig: { retries: 3, minTimeout: 10, maxTimeout: 20 } });
    store = new LocalWorkspaceStore(await mkdtemp(join(tmpdir(), 'oi-files-out-')));
  });
  afterAll(() => slack.close());

  function newThread() {
    const threadTs = `${1700000000 + 1000 * ++threadCounter}.000000`;
    slack.seedMessage({ channel: 'C1', ts: threadTs, user: 'U1', text: '<@UBOT> go' });
    return { threadTs, workspace: store.open({ team: 'T1', channel: 'C1', threadTs }) as LocalWorkspace };
  }

  const uploadsIn = (threadTs: string) => slack.uploads.filter((upload) => upload.threadTs === threadTs);
  const notesIn = (threadTs: string) =>
    slack.botMessagesIn('C1', threadTs).filter((message) => !message.files).map((message) => message.text);

  test('after a turn: figures first, then other images, then files; capped with a note', async () => {
    const { threadTs, workspace } = newThread();
    await workspace.write('a.csv', 'a\n1\n');
    await workspace.write('b.txt', 'bee');
    await workspace.write('c.txt', 'sea');
    await workspace.write('charts/q1.png', PNG);
    await workspace.write('figure-1.png', Buffer.concat([PNG, Buffer.from('fig')]));
    await workspace.write('.oi/state.pkl', 'internal');
    await workspace.write('__pycache__/helper.cpython-311.pyc', 'bytecode');
    await workspace.write('empty.txt', '');

    const result = await shareTurnFiles({
      thread: new WebSlackThread(client, 'C1', threadTs, silentLogger),
      workspace,
      paths: ['a.csv', 'charts/q1.png', '.oi/state.pkl', 'deleted.csv', 'b.txt', '__pycache__/helper.cpython-311.pyc', 'empty.txt', 'c.txt', '../escape.txt'],
      figures: ['figure-1.png'],
      max: 3,
      logger: silentLogger,
    });
    expect(result).toStrictEqual({ shared: ['figure-1.png', 'charts/q1.png', 'a.csv'], notShared: 2, failed: [] });
    const uploads = uploadsIn(threadTs);
    expect(uploads.map((upload) => [upload.filename, upload.title, upload.channelId, upload.bytes.toString('latin1')])).toStrictEqual([
      ['figure-1.png', 'figure-1.png', 'C1', Buffer.concat([PNG, Buffer.from('fig')]).toString('latin1')],
      ['q1.png', 'charts/q1.png', 'C1', PNG.toString('latin1')],
      ['a.csv', 'a.csv', 'C1', 'a\n1\n'],
    ]);
    expect(uploads.map((upload) => upload.declaredLength), 'announced lengths').toStrictEqual(uploads.map((upload) => upload.bytes.length));
    const notes = notesIn(threadTs);
    expect(notes).toHaveLength(1);
    expect(notes[0] ?? '').toMatch(/2 more files from this turn\. Write `download` to get every file/);
    expect(slack.callsTo('files.upload'), 'the retired method is never used').toStrictEqual([]);
    expect(slack.unexpected).toStrictEqual([]);
  });

  test('a symbolic link to /etc/passwd (or to a folder outside) is never shared', async () => {
    const { threadTs, workspace } = newThread();
    await workspace.write('real.txt', 'real');
    await symlink('/etc/passwd', join(workspace.root, 'passwd-link'));
    await symlink('/etc', join(workspace.root, 'etc-link'));
    const result = await shareTurnFiles({
      thread: new WebSlackThread(client, 'C1', threadTs, silentLogger),
      workspace,
      paths: ['passwd-link', 'etc-link/passwd', 'real.txt'],
      figures: ['passwd-link'],
      max: 10,
      logger: silentLogger,
    });
    expect(result).toStrictEqual({ shared: ['real.txt'], notShared: 0, failed: [] });
    expect(uploadsIn(threadTs).map((upload) => upload.bytes.toString())).toStrictEqual(['real']);

    const download = await runDownloadCommand({ thread: new WebSlackThread(client, 'C1', threadTs, silentLogger), workspace, logger: silentLogger, batchPauseMs: 0 });
    expect(download).toStrictEqual({ shared: ['real.txt'], failed: [] });
    expect(uploadsIn(threadTs).map((upload) => upload.bytes.toString())).not.toContainEqual(expect.stringContaining('root:'));
  });

  test('nothing to share posts nothing', async () => {
    const { threadTs, workspace } = newThread();
    await workspace.write('.oi/steps/x/result.json', '{}');
    const result = await shareTurnFiles({
      thread: new WebSlackThread(client, 'C1', threadTs, silentLogger),
      workspace,
      paths: ['.oi/steps/x/result.json'],
      figures: [],
      max: 10,
      logger: silentLogger,
    });
    expect(result).toStrictEqual({ shared: [], notShared: 0, failed: [] });
    expect(slack.botMessagesIn('C1', threadTs)).toStrictEqual([]);
  });

  test('a file Slack would refuse (over 1 GB) is reported in the thread; the others still go', async () => {
    const { threadTs, workspace } = newThread();
    await workspace.write('huge.bin', '');
    await truncate(join(workspace.root, 'huge.bin'), 1024 * 1024 * 1024 + 1); // sparse: no real disk used
    await workspace.write('small.txt', 'small');
    const result = await shareTurnFiles({
      thread: new WebSlackThread(client, 'C1', threadTs, silentLogger),
      workspace,
      paths: ['huge.bin', 'small.txt'],
      figures: [],
      max: 10,
      logger: silentLogger,
    });
    expect(result).toStrictEqual({ shared: ['small.txt'], notShared: 0, failed: ['huge.bin'] });
    expect(uploadsIn(threadTs).map((upload) => upload.title)).toStrictEqual(['small.txt']);
    expect(notesIn(threadTs)).toStrictEqual([
      ':warning: I could not post `huge.bin` (larger than the 1 GB Slack accepts).',
    ]);
  });

  test('download posts every file with its bytes into the right thread, in batches, nothing internal', async () => {
    const { threadTs, workspace } = newThread();
    const other = newThread();
    await other.workspace.write('secret-of-another-thread.txt', 'not yours');
    const expected = new Map<string, Buffer>();
    for (let index = 0; index < 9; index++) expected.set(`data-${index}.csv`, Buffer.from(`row,${index}\n`));
    expected.set('charts/q1.png', PNG);
    expected.set('deep/er/notes.md', Buffer.from('# ノート\n'));
    expected.set('uploaded (1).csv', Buffer.from('users own upload\n'));
    for (const [path, contents] of expected) await workspace.write(path, contents);
    await workspace.write('.oi/state.pkl', 'internal');
    await workspace.write('.oi/steps/1/request.json', '{}');
    await mkdir(join(workspace.root, 'empty-folder'));
    slack.rateLimit('files.completeUploadExternal', { every: 3 });
    try {
      const result = await runDownloadCommand({ thread: new WebSlackThread(client, 'C1', threadTs, silentLogger), workspace, logger: silentLogger, batchPauseMs: 10 });
      expect(result.failed).toStrictEqual([]);
      expect([...result.shared].sort()).toStrictEqual([...expected.keys()].sort());
    } finally {
      slack.rateLimit('files.completeUploadExternal', { every: Number.MAX_SAFE_INTEGER });
    }
    const uploads = uploadsIn(threadTs);
    expect(uploads.map((upload) => [upload.title, upload.bytes.toString('base64')]).sort()).toStrictEqual([...expected].map(([path, contents]) => [path, contents.toString('base64')]).sort());
    for (const upload of uploads) expect(upload, upload.title).toMatchObject({ channelId: 'C1', filename: upload.title.split('/').pop() });
    expect(slack.rateLimited.length, 'a 429 happened and was retried').toBeGreaterThanOrEqual(1);
    const shares = slack.botMessagesIn('C1', threadTs).filter((message) => message.files);
    expect(shares, '12 files in messages of at most 5').toHaveLength(3);
    expect(shares[0]?.text).toBe('Here are the 12 files of this thread:');
    expect(uploadsIn(other.threadTs)).toStrictEqual([]);
    expect(slack.unexpected).toStrictEqual([]);
  });

  test('download sends files with awkward names under clean names and names what it cannot send', async () => {
    const { threadTs, workspace } = newThread();
    const longName = `${'長'.repeat(80)}.csv`; // 243 bytes: a name Linux accepts, longer than Slack needs
    const deep = `${Array.from({ length: 40 }, (_, index) => `folder-number-${index}-with-a-long-name`).join('/')}/deep.txt`;
    const awkward = new Map<string, string>([
      ['report\nfinal.csv', 'newline'],
      ['tab\tand\u0007bell.txt', 'control'],
      ['\u202eevil.txt', 'override'],
      [longName, 'long'],
      ['.env', 'hidden'],
      ['...', 'dots'],
      [deep, 'deep'],
    ]);
    for (const [path, contents] of awkward) {
      await mkdir(join(workspace.root, path, '..'), { recursive: true });
      await writeFile(join(workspace.root, path), contents);
    }
    await writeFile(join(workspace.root, 'back\\slash.txt'), 'backslash');
    await writeFile(join(workspace.root, 'empty\n.txt'), '');
    const result = await runDownloadCommand({ thread: new WebSlackThread(client, 'C1', threadTs, silentLogger), workspace, logger: silentLogger, batchPauseMs: 0 });

    const uploads = uploadsIn(threadTs);
    expect(uploads.map((upload) => upload.bytes.toString()).sort(), 'every readable file was sent').toStrictEqual([...awkward.values()].sort());
    const byContent = new Map(uploads.map((upload) => [upload.bytes.toString(), upload]));
    expect(byContent.get('newline')).toMatchObject({ filename: 'report_final.csv', title: 'report_final.csv' });
    expect(byContent.get('control')).toMatchObject({ filename: 'tab_and_bell.txt' });
    expect(byContent.get('override')).toMatchObject({ filename: '_evil.txt' });
    expect(byContent.get('hidden')).toMatchObject({ filename: '.env' });
    expect(byContent.get('dots')).toMatchObject({ filename: 'file' });
    expect(Buffer.byteLength(byContent.get('long')?.filename ?? '')).toBeLessThanOrEqual(180);
    expect(byContent.get('long')?.filename).toMatch(/^長+\.csv$/);
    expect(byContent.get('deep')?.title.length).toBeLessThanOrEqual(250);
    for (const upload of uploads) expect(upload.filename + upload.title, 'no control character reaches Slack').not.toMatch(/[\u0000-\u001f\u007f\u202e]/);

    expect(result.failed).toStrictEqual(['back\\slash.txt']);
    const notes = notesIn(threadTs).join('\n');
    expect(notes).toContain('I could not post `back\\slash.txt` (it could not be read from the workspace).');
    expect(notes).toContain('empty, and Slack takes no empty file: `empty_.txt`');
    expect(slack.unexpected).toStrictEqual([]);
  });

  test('download in an empty workspace says so', async () => {
    const { threadTs, workspace } = newThread();
    await workspace.write('.oi/state.pkl', 'internal only');
    const result = await runDownloadCommand({ thread: new WebSlackThread(client, 'C1', threadTs, silentLogger), workspace, logger: silentLogger });
    expect(result).toStrictEqual({ shared: [], failed: [] });
    expect(uploadsIn(threadTs)).toStrictEqual([]);
    expect(notesIn(threadTs)).toStrictEqual(['There are no files in this thread yet. Attach files to a mention, or ask me to create some.']);
  });
});
