import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { lastUserText, userTexts } from '../fakes/fake-openai.js';
import { OPENAI_KEY, BOT_TOKEN, SIGNING_SECRET } from './bot-process.js';
import { BOT_USER, startHarness, stopHarness, TEAM, type Backend, type Harness } from './harness.js';
import { mentionEvent, mentionText, messageEvent, nextMessageTs, postEvent, postSigned } from './slack-events.js';
import { readAll } from './workspace-contract.js';

export { fileScenarios } from './file-scenarios.js';

/** The scenarios of issue 2, run against one backend (the file scenarios of issue 3 are in file-scenarios.ts). */
export function endToEndScenarios(name: string, makeBackend: () => Promise<Backend>): void {
  describe(`end to end (${name})`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(makeBackend, { STEP_TIMEOUT_SEC: '3' });
    });
    afterAll(async () => stopHarness(h));

    /** The model requests of the turns that a user message with exactly this text started. */
    const requestsFor = (text: string) => h.ai.requests.filter((request) => userTexts(request.body).includes(text));

    test('a mention is answered in its own thread, with a status message, never in the channel', async () => {
      const { threadTs, status } = await h.mention('run: print(sum(range(1, 101)))');
      expect(status).toBe(200);
      const answer = await h.waitForReply(threadTs, /Result:/);
      expect(answer).toMatch(/5050/);
      const posts = h.slack.callsTo('chat.postMessage');
      expect(posts.filter((call) => typeof call.args.thread_ts !== 'string'), 'every post is in a thread').toStrictEqual([]);
      const statusMessages = h.slack.botMessagesIn('C1', threadTs).filter((message) => /step/.test(message.text ?? ''));
      expect(statusMessages, 'one status message, edited in place').toHaveLength(1);
      expect(h.slack.callsTo('chat.update').map((call) => call.args.ts)).toContain(statusMessages[0]!.ts);
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
        const others = [...texts.matchAll(/answer-(\d+)-/g)].map((match) => Number(match[1])).filter((other) => other !== index);
        expect(others, `thread ${index} saw answers of other threads`).toStrictEqual([]);
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
      await h.idle();
      expect(h.ai.requests.length - before).toBe(1);
      expect(h.slack.botMessagesIn('C1', first.threadTs).filter((message) => /echo: only once/.test(message.text ?? ''))).toHaveLength(1);
      const routed = h.bot.logLines().filter((line) => line.message === 'event routed' && line.eventId === first.eventId);
      expect(routed.map((line) => line.reason ?? line.outcome), 'this instance remembered it: no store round trip').toStrictEqual(['accepted', 'event_id seen', 'event_id seen']);
    });

    test('a redelivered event_id starts nothing, even when its payload differs from the first delivery', async () => {
      const first = await h.mention('first delivery');
      await h.waitForReply(first.threadTs, /echo: first delivery/);
      // Same event_id, another message (another ts): only the event_id can tell it was seen already.
      const changed = mentionEvent({ channel: 'C1', user: 'U1', text: mentionText(BOT_USER, 'changed redelivery'), ts: nextMessageTs() });
      const redelivered = await postEvent(h.bot.eventsUrl, SIGNING_SECRET, changed, { eventId: first.eventId, retryNum: 1, retryReason: 'http_error' });
      expect(redelivered.status).toBe(200);
      await h.idle();
      expect(requestsFor('changed redelivery')).toStrictEqual([]);
      expect(h.slack.botMessagesIn('C1', String(changed.ts))).toStrictEqual([]);
    });

    test('one message delivered as app_mention and as message (two event_ids) starts one turn', async () => {
      // In a direct message a mention of the bot arrives twice: as `app_mention` and as `message` (im).
      const ts = nextMessageTs();
      const text = mentionText(BOT_USER, 'delivered twice');
      const asMention = await postEvent(h.bot.eventsUrl, SIGNING_SECRET, mentionEvent({ channel: 'D2', user: 'U1', text, ts }));
      const asMessage = await postEvent(h.bot.eventsUrl, SIGNING_SECRET, messageEvent({ channel: 'D2', user: 'U1', text, ts, channel_type: 'im' }));
      expect(asMention.eventId).not.toBe(asMessage.eventId);
      await h.waitForReply(ts, /echo: delivered twice/, 'D2');
      await h.idle();
      expect(requestsFor('delivered twice')).toHaveLength(1);
      const texts = h.slack.botMessagesIn('D2', ts).map((message) => message.text);
      expect(texts.filter((message) => /echo: delivered twice/.test(message))).toHaveLength(1);
      expect(texts.filter((message) => /I'll get to this/.test(message)), 'no second turn queued').toStrictEqual([]);
      const second = h.bot.logLines().find((line) => line.message === 'event routed' && line.eventId === asMessage.eventId);
      expect(second?.reason, 'this instance remembered the message: no store round trip').toBe('message seen');
    });

    test('a request with a bad signature is rejected and starts nothing', async () => {
      const before = h.ai.requests.length;
      const event = mentionEvent({ channel: 'C1', user: 'U1', text: mentionText(BOT_USER, 'forged') });
      const body = JSON.stringify({ type: 'event_callback', team_id: TEAM, event, event_id: 'EvForged1' });
      const result = await postSigned(h.bot.eventsUrl, 'wrong-secret', body);
      expect(result.status).toBe(401);
      await h.idle();
      expect(h.ai.requests.length).toBe(before);
    });

    test('messages from bots, the bot itself and other bots, start nothing', async () => {
      const before = h.ai.requests.length;
      const posts = h.slack.callsTo('chat.postMessage').length;
      const fromItself = messageEvent({ channel: 'C1', user: BOT_USER, bot_id: 'B1', text: mentionText(BOT_USER, 'loop?') });
      // Another bot's message has a user id of its own besides its bot_id: only bot_id tells it is a bot.
      const fromOtherBot = messageEvent({ channel: 'C1', user: 'UOTHERBOT', bot_id: 'BOTHER', text: mentionText(BOT_USER, 'run: print("bot to bot")') });
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, { ...fromItself, type: 'app_mention' });
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, { ...fromOtherBot, type: 'app_mention' });
      const { barrierTs } = await h.idle();
      expect(h.ai.requests.length).toBe(before);
      const newPosts = h.slack.callsTo('chat.postMessage').slice(posts).filter((call) => call.args.thread_ts !== barrierTs);
      expect(newPosts, 'nothing posted').toStrictEqual([]);
    });

    test('a direct message needs no mention; a plain channel message is ignored', async () => {
      const ts = nextMessageTs();
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, messageEvent({ channel: 'D1', user: 'U1', text: 'hello in private', ts, channel_type: 'im' }));
      await h.waitForReply(ts, /echo: hello in private/, 'D1');
      const before = h.ai.requests.length;
      const chatter = nextMessageTs();
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, messageEvent({ channel: 'C1', user: 'U1', text: 'just chatting', ts: chatter }));
      await h.idle();
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

    test('an endless loop times out with a message; the variables it made survive and the thread keeps working', async () => {
      // The runner's own alarm stops the code and saves the state; a kill from outside would lose it.
      const { threadTs } = await h.mention("run: made_before_the_loop = 'still here'\nwhile True: pass");
      const result = await h.waitForReply(threadTs, /Result:/, 'C1', 30_000);
      expect(result).toMatch(/STEP_TIMEOUT_SEC|stopped after/);
      await h.mention('run: print(made_before_the_loop)', { threadTs });
      await h.waitForReply(threadTs, /Result: still here/);
    });

    test('the sandbox environment holds none of the controller secrets', async () => {
      const { threadTs } = await h.mention(
        "run: import os, glob\nblob = repr(dict(os.environ))\nfor path in glob.glob('/proc/*/environ'):\n    try: blob += open(path, 'rb').read().decode('latin-1')\n    except Exception: pass\nprint('xoxb' in blob, 'sk-test' in blob, 'SIGNING' in blob, len(blob) > 0)",
      );
      const result = await h.waitForReply(threadTs, /Result:/);
      expect(result).toMatch(/False False False True/);
      expect(h.slack.calls.filter((call) => JSON.stringify(call.args).includes(OPENAI_KEY)), 'no key in Slack').toStrictEqual([]);
      expect(h.ai.requests.filter((request) => JSON.stringify(request.body).includes(BOT_TOKEN)), 'no token to the model').toStrictEqual([]);
      expect(h.bot.output(), 'no secret in the logs').not.toContain(BOT_TOKEN);
      expect(h.bot.output(), 'no secret in the logs').not.toContain(OPENAI_KEY);
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
      expect(userTexts(lastRequest), 'the failed turn is in the history').toContainEqual(expect.stringMatching(/broken model/));
      expect(lastUserText(lastRequest)).toBe('and now?');
    });
  });
}
