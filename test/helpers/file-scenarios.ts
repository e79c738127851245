import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SIGNING_SECRET } from './bot-process.js';
import { BOT_USER, startHarness, stopHarness, TEAM, type Backend, type Harness } from './harness.js';
import { mentionEvent, mentionText, nextMessageTs, postEvent } from './slack-events.js';

/** The file scenarios of issue 3 through the whole bot, run against one backend. */
export function fileScenarios(name: string, makeBackend: () => Promise<Backend>): void {
  describe(`files end to end (${name})`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(makeBackend, { MAX_UPLOAD_MB: '1' });
    });
    afterAll(async () => stopHarness(h));

    const uploadsIn = (threadTs: string) => h.slack.uploads.filter((upload) => upload.threadTs === threadTs);
    const filesOf = async (threadTs: string) =>
      (await h.backend.store(h.bot.dataDir).open({ team: TEAM, channel: 'C1', threadTs }).list()).map((file) => file.path);

    test('a CSV attached to a mention is saved in the workspace and analysed in the same turn', async () => {
      const file = h.slack.addFile({ name: 'sales.csv', content: 'region,amount\neast,10\nwest,32\n', mimetype: 'text/csv' });
      const { threadTs } = await h.mention("run: import csv\nrows = list(csv.DictReader(open('sales.csv')))\nprint('total', sum(int(row['amount']) for row in rows))", { files: [file] });
      await h.waitForReply(threadTs, /Result: total 42/);
      const firstRequest = h.ai.requests.find((request) => JSON.stringify(request.body).includes('sales.csv'))!;
      expect(JSON.stringify(firstRequest.body.messages.at(-1))).toMatch(/I uploaded sales\.csv to \.\/sales\.csv/);
    });

    test('a mention with only a file asks the model for a first look', async () => {
      const file = h.slack.addFile({ name: 'notes.txt', content: 'hello', mimetype: 'text/plain' });
      const { threadTs } = await h.mention('', { files: [file] });
      const reply = await h.waitForReply(threadTs, /echo:/);
      expect(reply).toMatch(/notes\.txt/);
      expect(reply).toMatch(/first look/);
    });

    test('files the event names only by id are completed from the message itself, deep in a long thread', async () => {
      // Slack may send a file_share mention whose files carry only their ids. The bot's catch-up reads the
      // thread up to that message (conversations.replies, latest = its ts, inclusive) and takes the files from
      // the message itself; a window that missed the message would fall back to files.info.
      const parentTs = nextMessageTs();
      h.slack.seedMessage({ channel: 'C1', ts: parentTs, user: 'U2', text: 'a long discussion' });
      const seedReply = (text: string) => h.slack.seedMessage({ channel: 'C1', ts: nextMessageTs(), thread_ts: parentTs, user: 'U2', text });
      for (let index = 0; index < 12; index++) seedReply(`earlier reply ${index}`);
      const file = h.slack.addFile({ name: 'late-arrival.csv', content: 'a,b\n1,2\n', mimetype: 'text/csv' });
      const mentionTs = nextMessageTs();
      h.slack.seedMessage({ channel: 'C1', ts: mentionTs, thread_ts: parentTs, user: 'U1', text: mentionText(BOT_USER), files: [file] });
      for (let index = 0; index < 3; index++) seedReply(`later reply ${index}`);

      const event = mentionEvent({ channel: 'C1', user: 'U1', text: mentionText(BOT_USER), ts: mentionTs, thread_ts: parentTs, files: [{ id: file.id } as never] });
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, event);
      const reply = await h.waitForReply(parentTs, /echo:/);
      expect(reply).toMatch(/I uploaded late-arrival\.csv to \.\/late-arrival\.csv/);
      expect(reply).toMatch(/first look/);
      expect(await filesOf(parentTs)).toStrictEqual(['late-arrival.csv']);
      expect(h.slack.callsTo('conversations.replies').at(-1)?.args).toMatchObject({ channel: 'C1', ts: parentTs });
      expect(h.slack.callsTo('files.info').filter((call) => call.args.file === file.id), 'the message itself had the details').toStrictEqual([]);
    });

    test('unsafe and duplicate names are sanitised; the model is told the name used', async () => {
      const first = h.slack.addFile({ name: '../../x.csv', content: 'a\n1\n', mimetype: 'text/csv' });
      const { threadTs } = await h.mention('here', { files: [first] });
      await h.waitForReply(threadTs, /echo: here/);
      const second = h.slack.addFile({ name: 'x.csv', content: 'a\n2\n', mimetype: 'text/csv' });
      await h.mention('again', { threadTs, files: [second] });
      const reply = await h.waitForReply(threadTs, /echo: again/);
      expect(reply).toMatch(/x \(\d\)\.csv/);
      const files = await filesOf(threadTs);
      expect(files.filter((path) => path.includes('x'))).toHaveLength(2);
      expect(files.filter((path) => path.includes('..') || path.startsWith('/'))).toStrictEqual([]);
    });

    test('an over-size file and a login-page answer are told in the thread; the turn goes on', async () => {
      const big = h.slack.addFile({ name: 'big.csv', content: Buffer.alloc(2 * 1024 * 1024, 65), mimetype: 'text/csv' });
      const denied = h.slack.addFile({ name: 'secret.csv', content: 'a,b\n', mimetype: 'text/csv', mode: 'login-page' });
      const fine = h.slack.addFile({ name: 'fine.csv', content: 'a\n1\n', mimetype: 'text/csv' });
      const { threadTs } = await h.mention('three files', { files: [big, denied, fine] });
      await h.waitForReply(threadTs, /big\.csv/);
      await h.waitForReply(threadTs, /secret\.csv/);
      await h.waitForReply(threadTs, /echo: three files/);
      expect(await filesOf(threadTs), 'nothing half-written is left').toStrictEqual(['fine.csv']);
    });

    test('charts made with savefig and with plt.show() come back into the thread without asking', async () => {
      const { threadTs } = await h.mention(
        "run: import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.savefig('saved.png')\nplt.close()\nplt.bar(['a', 'b'], [3, 4])\nplt.show()",
      );
      await h.waitForReply(threadTs, /Result:/);
      const uploads = await h.slack.waitFor(() => (uploadsIn(threadTs).length >= 2 ? uploadsIn(threadTs) : undefined), 20_000);
      const names = uploads.map((upload) => upload.filename).sort();
      expect(names).toStrictEqual(['figure_1.png', 'saved.png']);
      for (const upload of uploads) expect(upload.bytes.subarray(1, 4).toString()).toBe('PNG');
    });

    test('download shares every file with the right bytes, nothing internal, no symlink out, no other thread', async () => {
      const other = await h.mention("run: open('other-thread.txt', 'w').write('not yours')");
      await h.waitForReply(other.threadTs, /Result:/);
      const file = h.slack.addFile({ name: 'input.csv', content: 'x\n1\n', mimetype: 'text/csv' });
      const { threadTs } = await h.mention(
        "run: import os\nos.makedirs('out/deep', exist_ok=True)\nopen('out/deep/result.txt', 'w').write('deep result')\ntry:\n    os.symlink('/etc/passwd', 'passwd-link')\nexcept OSError:\n    pass\nprint('ok')",
        { files: [file] },
      );
      await h.waitForReply(threadTs, /Result: ok/);
      const before = h.ai.requests.length;
      await h.mention('ダウンロード', { threadTs });
      const shared = await h.slack.waitFor(() => {
        const titles = uploadsIn(threadTs).map((upload) => upload.title);
        return titles.includes('input.csv') && titles.includes('out/deep/result.txt') ? uploadsIn(threadTs) : undefined;
      }, 20_000);
      expect(h.ai.requests.length, 'no model call').toBe(before);
      const byTitle = new Map(shared.map((upload) => [upload.title, upload.bytes.toString()]));
      expect(byTitle.get('input.csv')).toBe('x\n1\n');
      expect(byTitle.get('out/deep/result.txt')).toBe('deep result');
      const unwanted = [...byTitle.keys()].filter((title) => title.startsWith('.oi') || title.includes('passwd') || title.includes('other-thread'));
      expect(unwanted).toStrictEqual([]);
      expect([...byTitle.values()].filter((bytes) => bytes.includes('root:')), 'no host file content').toStrictEqual([]);

      const empty = await h.mention('download');
      await h.waitForReply(empty.threadTs, /no files/i);
    });
  });
}

