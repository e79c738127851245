import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { WorkspaceStore } from '../../controller/workspace/workspace.js';
import { FakeOpenAI, lastUserText, toolResults, executeCall, type ChatRequest, type Reply } from '../fakes/fake-openai.js';
import { FakeSlack } from '../fakes/fake-slack.js';
import { mentionEvent, mentionText, messageEvent, nextMessageTs, postEvent, postSigned } from './slack-events.js';
import { BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET, startBot, type BotProcess } from './bot-process.js';
import { readAll } from './workspace-contract.js';

export const BOT_USER = 'UBOT';
export const TEAM = 'T1';

export interface Backend {
  /** Environment for the bot process (on top of Slack/OpenAI settings and DATA_DIR). */
  env: Record<string, string>;
  /** The same store the bot uses, to look at files from the outside. */
  store: (dataDir: string) => WorkspaceStore;
  close: () => Promise<void>;
}

/**
 * The deterministic "model" of the end-to-end tests. A user message `run: <code>` makes it call
 * execute with that code, then answer `Result: <tool output>`; any other text is echoed back.
 */
export function scriptedModel(request: ChatRequest): Reply {
  // The bot appends notes about uploads after the user's own text: the code ends before them.
  const text = lastUserText(request).split('\n\nI uploaded ')[0]!;
  const results = toolResults(request, { sinceLastUser: true });
  const match = /run:\s*([\s\S]*)$/.exec(text);
  if (match === null) return { content: `echo: ${lastUserText(request)}`, usage: { total_tokens: 10 } };
  if (results.length === 0) return { ...executeCall(match[1]!), usage: { total_tokens: 10 } };
  return { content: `Result: ${results.at(-1)!.content}`, usage: { total_tokens: 10 } };
}

export interface Harness {
  slack: FakeSlack;
  ai: FakeOpenAI;
  bot: BotProcess;
  backend: Backend;
  /** Posts a mention in a new thread (or in `threadTs`) and returns its ts. */
  mention: (text: string, options?: { channel?: string; threadTs?: string; user?: string; files?: unknown[]; eventId?: string; retryNum?: number }) => Promise<{ ts: string; threadTs: string; status: number; eventId: string }>;
  /** Waits until the thread has a bot message matching `pattern` and returns its text. */
  waitForReply: (threadTs: string, pattern: RegExp, channel?: string, timeoutMs?: number) => Promise<string>;
}

export async function startHarness(makeBackend: () => Promise<Backend>, env: Record<string, string> = {}): Promise<Harness> {
  const slack = await new FakeSlack({ botToken: BOT_TOKEN, botUserId: BOT_USER, teamId: TEAM }).start();
  const ai = await new FakeOpenAI({ apiKey: OPENAI_KEY }).start();
  ai.script(scriptedModel);
  const backend = await makeBackend();
  const bot = await startBot({ slackApiUrl: slack.apiUrl, openaiBaseUrl: ai.baseUrl, env: { ...backend.env, ...env } });
  const harness: Harness = {
    slack,
    ai,
    bot,
    backend,
    mention: async (text, options = {}) => {
      const ts = nextMessageTs();
      const channel = options.channel ?? 'C1';
      const event = mentionEvent({
        channel,
        user: options.user ?? 'U1',
        text: mentionText(BOT_USER, text),
        ts,
        thread_ts: options.threadTs,
        files: options.files as never,
      });
      const result = await postEvent(bot.eventsUrl, SIGNING_SECRET, event, { eventId: options.eventId, retryNum: options.retryNum });
      return { ts, threadTs: options.threadTs ?? ts, status: result.status, eventId: result.eventId };
    },
    waitForReply: (threadTs, pattern, channel = 'C1', timeoutMs = 20_000) =>
      slack.waitFor(
        (fake) => fake.botMessagesIn(channel, threadTs).find((message) => pattern.test(message.text ?? ''))?.text,
        timeoutMs,
      ),
  };
  return harness;
}

export async function stopHarness(harness: Harness | undefined): Promise<void> {
  if (harness === undefined) return;
  await harness.bot.stop();
  await Promise.all([harness.slack.close(), harness.ai.close(), harness.backend.close()]);
}

/** The scenarios of issue 2 (and the file scenarios of issue 3), run against one backend. */
export function endToEndScenarios(name: string, makeBackend: () => Promise<Backend>): void {
  describe(`end to end (${name})`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(makeBackend, { STEP_TIMEOUT_SEC: '3' });
    });
    afterAll(async () => stopHarness(h));

    test('a mention is answered in its own thread, with a status message, never in the channel', async () => {
      const { threadTs, status } = await h.mention('run: print(sum(range(1, 101)))');
      expect(status).toBe(200);
      const answer = await h.waitForReply(threadTs, /Result:/);
      expect(answer).toMatch(/5050/);
      const posts = h.slack.callsTo('chat.postMessage');
      expect(posts.every((call) => typeof call.args.thread_ts === 'string'), 'every post is in a thread').toBeTruthy();
      const statusMessages = h.slack.botMessagesIn('C1', threadTs).filter((message) => /step/.test(message.text ?? ''));
      expect(statusMessages.length, 'one status message, edited in place').toBe(1);
      expect(h.slack.callsTo('chat.update').some((call) => call.args.ts === statusMessages[0]!.ts)).toBeTruthy();
    });

    test('the second mention in a thread sees the first turn; a new thread starts clean', async () => {
      const { threadTs } = await h.mention('run: favourite = 41 + 1\nprint(favourite)');
      await h.waitForReply(threadTs, /Result:/);
      const before = h.ai.requests.length;
      await h.mention('what did we compute?', { threadTs });
      await h.waitForReply(threadTs, /echo: what did we compute/);
      const request = h.ai.requests.slice(before).at(-1)!.body;
      const roles = request.messages.map((message) => message.role);
      expect(roles).toStrictEqual(['system', 'user', 'assistant', 'tool', 'assistant', 'user']);
      expect(JSON.stringify(request.messages[2])).toMatch(/favourite = 41 \+ 1/);
      expect(String(request.messages[3]!.content)).toMatch(/42/);

      const fresh = await h.mention('hello new thread');
      await h.waitForReply(fresh.threadTs, /echo: hello new thread/);
      const freshRequest = h.ai.requests.at(-1)!.body;
      expect(freshRequest.messages.map((message) => message.role)).toStrictEqual(['system', 'user']);
    });

    test('Python state survives between turns of a thread and stays in its thread', async () => {
      const first = await h.mention('run: secret_number = 1234');
      await h.waitForReply(first.threadTs, /Result:/);
      await h.mention('run: print(secret_number * 2)', { threadTs: first.threadTs });
      await h.waitForReply(first.threadTs, /Result: 2468/);
      const other = await h.mention("run: print('secret_number' in globals())");
      await h.waitForReply(other.threadTs, /Result: False/);
    });

    test('two threads writing data.csv never collide', async () => {
      const [a, b] = await Promise.all([
        h.mention("run: open('data.csv', 'w').write('thread A')"),
        h.mention("run: open('data.csv', 'w').write('thread B')"),
      ]);
      await Promise.all([h.waitForReply(a.threadTs, /Result:/), h.waitForReply(b.threadTs, /Result:/)]);
      const store = h.backend.store(h.bot.dataDir);
      const read = async (threadTs: string) => readAll(await store.open({ team: TEAM, channel: 'C1', threadTs }).read('data.csv'));
      expect(await read(a.threadTs)).toBe('thread A');
      expect(await read(b.threadTs)).toBe('thread B');
      await h.mention("run: print(open('data.csv').read())", { threadTs: a.threadTs });
      await h.waitForReply(a.threadTs, /Result: thread A/);
    });

    test('20 concurrent threads each get only their own answer', async () => {
      const threads = await Promise.all(
        Array.from({ length: 20 }, (_, index) => h.mention(`run: import time; time.sleep(0.05); print('answer-${index}-' + str(${index} * ${index}))`)),
      );
      await Promise.all(threads.map(({ threadTs }, index) => h.waitForReply(threadTs, new RegExp(`answer-${index}-${index * index}\\b`), 'C1', 60_000)));
      for (const [index, { threadTs }] of threads.entries()) {
        const texts = h.slack.botMessagesIn('C1', threadTs).map((message) => message.text ?? '').join('\n');
        const others = [...texts.matchAll(/answer-(\d+)-/g)].map((match) => Number(match[1]));
        expect(others.every((other) => other === index), `thread ${index} saw answers of ${others.join(',')}`).toBeTruthy();
      }
    });

    test('a retried or duplicated event starts no second turn', async () => {
      const before = h.ai.requests.length;
      const first = await h.mention('only once please');
      await h.waitForReply(first.threadTs, /echo: only once please/);
      const again = mentionEvent({ channel: 'C1', user: 'U1', text: mentionText(BOT_USER, 'only once please'), ts: first.ts });
      const retried = await postEvent(h.bot.eventsUrl, SIGNING_SECRET, again, { eventId: first.eventId, retryNum: 1, retryReason: 'http_timeout' });
      const duplicate = await postEvent(h.bot.eventsUrl, SIGNING_SECRET, again, { eventId: first.eventId });
      expect(retried.status).toBe(200);
      expect(duplicate.status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(h.ai.requests.length - before).toBe(1);
      expect(h.slack.botMessagesIn('C1', first.threadTs).filter((message) => /echo: only once/.test(message.text ?? '')).length).toBe(1);
    });

    test('a request with a bad signature is rejected and starts nothing', async () => {
      const before = h.ai.requests.length;
      const event = mentionEvent({ channel: 'C1', user: 'U1', text: mentionText(BOT_USER, 'forged') });
      const body = JSON.stringify({ type: 'event_callback', team_id: TEAM, event, event_id: 'EvForged1' });
      const result = await postSigned(h.bot.eventsUrl, 'wrong-secret', body);
      expect(result.status).toBe(401);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(h.ai.requests.length).toBe(before);
    });

    test('messages from bots, the bot itself included, start nothing', async () => {
      const before = h.ai.requests.length;
      const calls = h.slack.calls.length;
      const fromBot = messageEvent({ channel: 'C1', user: BOT_USER, bot_id: 'B1', text: mentionText(BOT_USER, 'loop?') });
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, { ...fromBot, type: 'app_mention' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(h.ai.requests.length).toBe(before);
      expect(h.slack.calls.filter((call) => call.method === 'chat.postMessage').length).toBe(h.slack.calls.slice(0, calls).filter((call) => call.method === 'chat.postMessage').length);
    });

    test('a direct message needs no mention; a plain channel message is ignored', async () => {
      const ts = nextMessageTs();
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, messageEvent({ channel: 'D1', user: 'U1', text: 'hello in private', ts, channel_type: 'im' }));
      await h.waitForReply(ts, /echo: hello in private/, 'D1');
      const before = h.ai.requests.length;
      const chatter = nextMessageTs();
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, messageEvent({ channel: 'C1', user: 'U1', text: 'just chatting', ts: chatter }));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(h.ai.requests.length).toBe(before);
      expect(h.slack.botMessagesIn('C1', chatter)).toStrictEqual([]);
    });

    test('a mention with no text gets a short help reply and no model call', async () => {
      const before = h.ai.requests.length;
      const { threadTs } = await h.mention('');
      const help = await h.waitForReply(threadTs, /code interpreter/);
      expect(help).toMatch(/download/);
      expect(h.ai.requests.length).toBe(before);
    });

    test('an endless loop times out with a message and the thread keeps working', async () => {
      const { threadTs } = await h.mention('run: while True: pass');
      const result = await h.waitForReply(threadTs, /Result:/, 'C1', 30_000);
      expect(result).toMatch(/STEP_TIMEOUT_SEC|stopped after/);
      await h.mention('run: print("still alive")', { threadTs });
      await h.waitForReply(threadTs, /Result: still alive/);
    });

    test('the sandbox environment holds none of the controller secrets', async () => {
      const { threadTs } = await h.mention(
        "run: import os, glob\nblob = repr(dict(os.environ))\nfor path in glob.glob('/proc/*/environ'):\n    try: blob += open(path, 'rb').read().decode('latin-1')\n    except Exception: pass\nprint('xoxb' in blob, 'sk-test' in blob, 'SIGNING' in blob, len(blob) > 0)",
      );
      const result = await h.waitForReply(threadTs, /Result:/);
      expect(result).toMatch(/False False False True/);
      expect(!h.slack.calls.some((call) => JSON.stringify(call.args).includes(OPENAI_KEY)), 'no key in Slack').toBeTruthy();
      expect(!h.ai.requests.some((request) => JSON.stringify(request.body).includes(BOT_TOKEN)), 'no token to the model').toBeTruthy();
      expect(!h.bot.output().includes(BOT_TOKEN) && !h.bot.output().includes(OPENAI_KEY), 'no secret in the logs').toBeTruthy();
    });

    test('a model failure is retried, and a final failure is told in the thread', async () => {
      h.ai.enqueue({ error: { status: 500, message: 'temporary' } });
      const retried = await h.mention('flaky model');
      await h.waitForReply(retried.threadTs, /echo: flaky model/, 'C1', 30_000);

      h.ai.enqueue({ error: { status: 400, message: 'bad request from the fake' } });
      const failed = await h.mention('broken model');
      const message = await h.waitForReply(failed.threadTs, /model service/);
      expect(message).toMatch(/HTTP 400/);
      await h.mention('and now?', { threadTs: failed.threadTs });
      await h.waitForReply(failed.threadTs, /echo: and now\?/);
      const lastRequest = h.ai.requests.at(-1)!.body;
      expect(lastRequest.messages.some((message) => message.role === 'user' && /broken model/.test(String(message.content))), 'the failed turn is in the history').toBeTruthy();
    });
  });
}

/** The file scenarios of issue 3 through the whole bot, run against one backend. */
export function fileScenarios(name: string, makeBackend: () => Promise<Backend>): void {
  describe(`files end to end (${name})`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(makeBackend, { MAX_UPLOAD_MB: '1' });
    });
    afterAll(async () => stopHarness(h));

    const uploadsIn = (threadTs: string) => h.slack.uploads.filter((upload) => upload.threadTs === threadTs);

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

    test('unsafe and duplicate names are sanitised; the model is told the name used', async () => {
      const first = h.slack.addFile({ name: '../../x.csv', content: 'a\n1\n', mimetype: 'text/csv' });
      const { threadTs } = await h.mention('here', { files: [first] });
      await h.waitForReply(threadTs, /echo: here/);
      const second = h.slack.addFile({ name: 'x.csv', content: 'a\n2\n', mimetype: 'text/csv' });
      await h.mention('again', { threadTs, files: [second] });
      const reply = await h.waitForReply(threadTs, /echo: again/);
      expect(reply).toMatch(/x \(\d\)\.csv/);
      const files = (await h.backend.store(h.bot.dataDir).open({ team: TEAM, channel: 'C1', threadTs }).list()).map((file) => file.path);
      expect(files.filter((path) => path.includes('x')).length).toStrictEqual(2);
      expect(files.every((path) => !path.includes('..') && !path.startsWith('/'))).toBeTruthy();
    });

    test('an over-size file and a login-page answer are told in the thread; the turn goes on', async () => {
      const big = h.slack.addFile({ name: 'big.csv', content: Buffer.alloc(2 * 1024 * 1024, 65), mimetype: 'text/csv' });
      const denied = h.slack.addFile({ name: 'secret.csv', content: 'a,b\n', mimetype: 'text/csv', mode: 'login-page' });
      const fine = h.slack.addFile({ name: 'fine.csv', content: 'a\n1\n', mimetype: 'text/csv' });
      const { threadTs } = await h.mention('three files', { files: [big, denied, fine] });
      await h.waitForReply(threadTs, /big\.csv/);
      await h.waitForReply(threadTs, /secret\.csv/);
      await h.waitForReply(threadTs, /echo: three files/);
      const files = (await h.backend.store(h.bot.dataDir).open({ team: TEAM, channel: 'C1', threadTs }).list()).map((file) => file.path);
      expect(files, 'nothing half-written is left').toStrictEqual(['fine.csv']);
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
      expect(![...byTitle.keys()].some((title) => title.startsWith('.oi') || title.includes('passwd') || title.includes('other-thread'))).toBeTruthy();
      expect(![...byTitle.values()].some((bytes) => bytes.includes('root:')), 'no host file content').toBeTruthy();

      const empty = await h.mention('download');
      await h.waitForReply(empty.threadTs, /no files/i);
    });
  });
}
