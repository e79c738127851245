/**
 * Several instances on one store, in process (issue 15): two Bots on one DATA_DIR, with one Slack and one model,
 * as two controller processes of a deployment. Each Bot is handed mentions directly, so only the store's
 * de-duplication and leases stand between them (the listeners' memory is not in the way).
 */
import { afterEach, describe, expect, test } from 'vitest';
import { loadHistory } from '../controller/agent/history.js';
import type { Mention } from '../controller/slack/mention.js';
import { silentLogger } from '../controller/logger.js';
import { SandboxError } from '../controller/sandbox/sandbox.js';
import { StatusMessage } from '../controller/slack/status-message.js';
import { ThreadLeases } from '../controller/workspace/thread-lease.js';
import { startBot, type InProcessBot } from './helpers/in-process-bot.js';
import { stopButtonValue } from './helpers/recording-slack-thread.js';
import { executeReply } from './helpers/scripted-model.js';
import { ScriptedSandbox } from './helpers/scripted-sandbox.js';

let instances: InProcessBot[] = [];
afterEach(async () => {
  for (const instance of instances.reverse()) await instance.close();
  instances = [];
});

async function twoInstances(options: Parameters<typeof startBot>[0] = {}): Promise<[InProcessBot, InProcessBot]> {
  const a = await startBot({ ...options, instanceId: 'instance-a' });
  const b = await startBot({ ...options, sameStoreAs: a, instanceId: 'instance-b' });
  instances = [a, b];
  return [a, b];
}

const done = (instance: InProcessBot) => instance.logs.filter((line) => line.message === 'mention done');

/** A model reply that waits until `open()` is called. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, reply: async () => (await opened, { content: 'first answer' }) };
}

describe('two instances on one store', () => {
  test("one event delivered to both (the second as Slack's retry) runs one turn", async () => {
    const [a, b] = await twoInstances({ script: [{ content: 'only once' }] });
    const mention: Mention = { ...a.mention('hello'), eventId: 'EvTWICE' };
    await Promise.all([a.bot.handleMention(mention), b.bot.handleMention({ ...mention })]);
    const thread = a.slack.thread('C1', mention.key.threadTs);
    expect(thread.texts.filter((text) => text === 'only once')).toHaveLength(1);
    expect(a.model.requests).toHaveLength(1);
    const outcomes = [...done(a), ...done(b)].map((line) => line.outcome).sort();
    expect(outcomes).toStrictEqual(['done', 'duplicate']);
    a.model.assertComplete();
  });

  test('a redelivered event_id with another payload, on the other instance, starts nothing', async () => {
    const [a, b] = await twoInstances({ script: [{ content: 'first delivery' }] });
    const first: Mention = { ...a.mention('first'), eventId: 'EvCHANGED' };
    await a.bot.handleMention(first);
    const changed: Mention = { ...b.mention('changed payload'), eventId: 'EvCHANGED' };
    await b.bot.handleMention(changed);
    expect(b.slack.thread('C1', changed.key.threadTs).messages).toStrictEqual([]);
    expect(done(b).map((line) => line.outcome)).toStrictEqual(['duplicate']);
  });

  test('two mentions in one thread sent to different instances run in order; the second sees the first', async () => {
    const first = gate();
    const [a, b] = await twoInstances({ script: [first.reply, { content: 'second answer' }] });
    const one = a.mention('first question');
    const two = b.mention('second question', { threadTs: one.key.threadTs });
    const thread = a.slack.thread('C1', one.key.threadTs);
    const running = a.bot.handleMention(one);
    await thread.waitFor(() => a.model.requests.length === 1);
    await b.bot.handleMention(two); // b queues it in the thread's inbox and says so
    expect(thread.texts).toContain(":inbox_tray: Got it — I'll get to this after the current turn in this thread.");
    expect(a.model.requests, 'the second waits for the first').toHaveLength(1);
    first.open();
    await running;
    await a.bot.drain();
    expect(thread.texts.filter((text) => text.endsWith('answer'))).toStrictEqual(['first answer', 'second answer']);
    const seen = a.model.requests[1]!.messages.filter((message) => message.role === 'user').map((message) => message.content);
    expect(seen).toStrictEqual(['first question', 'second question']);
    expect(done(a).map((line) => line.ts), 'the holder ran both').toStrictEqual([one.ts, two.ts]);
    expect(done(b), 'the other instance only queued it').toStrictEqual([]);
  });

  test.each([
    ['recorded in the journal', true],
    ['found by its Stop button', false],
  ])('a turn left by an instance that died is told at the next sweep (status message %s)', async (_how, recorded) => {
    const [, b] = await twoInstances({ env: { TURN_LEASE_SEC: '2', TURN_SWEEP_SEC: '1' } });
    const mention = b.mention('a long analysis');
    const thread = b.slack.thread('C1', mention.key.threadTs);
    // What an instance killed in the middle of a step leaves: its lease (expired a minute ago) with the turn in
    // the journal, and the turn's status message still showing Stop.
    const dead = new ThreadLeases<Mention>(b.store.records, { instance: 'dead', leaseMs: 2000, now: () => Date.now() - 60_000 });
    const lease = (await dead.submit(mention.key, mention)).lease!;
    const statusTs = (await new StatusMessage(thread, lease.current!.id, 0, silentLogger).start())!;
    if (recorded) {
      lease.noteStatus(lease.current!.id, statusTs);
      await lease.renew();
    }
    b.bot.start();
    await thread.waitFor((current) => current.texts.some((text) => /interrupted/.test(text)), 10_000);
    const status = thread.messages[0]!;
    expect(status.text).toBe(':warning: Interrupted');
    expect(stopButtonValue(status), 'the status message no longer offers Stop').toBeUndefined();
    expect(thread.texts.slice(1)).toStrictEqual([':warning: I was interrupted (the bot restarted) before I finished this request. Mention me again to run it.']);
    expect(await loadHistory(b.store.open(mention.key))).toStrictEqual([
      { role: 'user', content: 'a long analysis', meta: { ts: mention.ts, user: 'U1' } },
      { role: 'assistant', content: '(This request was interrupted before it finished: the bot restarted. The user may ask again.)' },
    ]);
    await b.bot.drain();
    expect(done(b).map((line) => line.outcome)).toStrictEqual(['interrupted']);
    expect(await b.store.records.list('leases/'), 'the lease is released').toStrictEqual([]);
  });

  test('shutdown: a turn cut short says it was interrupted; the mention queued behind it runs on the other instance', async () => {
    const sandbox = new ScriptedSandbox(
      (_request, { signal }) => new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(new SandboxError('cancelled', 'step cancelled')), { once: true })),
    );
    const [a, b] = await twoInstances({ sandbox, script: [executeReply('while True: pass'), { content: 'second answer' }], env: { TURN_SWEEP_SEC: '1' } });
    const one = a.mention('a long step');
    const two = b.mention('next question', { threadTs: one.key.threadTs });
    const thread = a.slack.thread('C1', one.key.threadTs);
    const first = a.bot.handleMention(one);
    await thread.waitFor(() => sandbox.requests.length === 1);
    await b.bot.handleMention(two);
    a.bot.close(); // SIGTERM: no new turn on a
    a.bot.stopAll(); // the grace period is over: cut the running turn short
    await first;
    await a.bot.drain();
    expect(thread.texts).toContain(':warning: I was interrupted (the bot restarted) before I finished this request. Mention me again to run it.');
    expect(thread.messages[0]!.text).toMatch(/^:warning: Interrupted · 1 step/);
    expect(thread.texts.join('\n'), 'not told as a Stop by someone').not.toMatch(/Stopped/);
    b.bot.start();
    await thread.waitFor((current) => current.texts.includes('second answer'), 10_000);
    const history = await loadHistory(b.store.open(one.key));
    expect(history.filter((message) => message.role === 'user').map((message) => message.content)).toStrictEqual(['a long step', 'next question']);
    expect(JSON.stringify(history)).toMatch(/interrupted before it finished/);
  });

  test('shutdown: a turn that cannot even be cut short is handed over in the journal, and the next holder tells it', async () => {
    const sandbox = new ScriptedSandbox(() => new Promise(() => {})); // ignores the abort
    const [a, b] = await twoInstances({ sandbox, script: [executeReply('import time; time.sleep(3600)'), { content: 'second answer' }], env: { TURN_SWEEP_SEC: '1' } });
    const one = a.mention('a stuck step');
    const two = b.mention('next question', { threadTs: one.key.threadTs });
    const thread = a.slack.thread('C1', one.key.threadTs);
    void a.bot.handleMention(one);
    await thread.waitFor(() => sandbox.requests.length === 1);
    await b.bot.handleMention(two);
    a.bot.close();
    a.bot.stopAll();
    await a.bot.handOver(); // the process is about to exit with the turn still running
    instances = [b];
    b.bot.start();
    await thread.waitFor((current) => current.texts.includes('second answer'), 10_000);
    expect(thread.messages[0]!.text).toBe(':warning: Interrupted');
    expect(thread.texts.filter((text) => /I was interrupted/.test(text))).toHaveLength(1);
    expect(thread.texts.indexOf('second answer')).toBeGreaterThan(thread.texts.findIndex((text) => /I was interrupted/.test(text)));
  });

  test('Stop pressed on the other instance stops the turn at the holder, and only for the asker or an admin', async () => {
    const sandbox = new ScriptedSandbox(
      (_request, { signal }) => new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(new SandboxError('cancelled', 'step cancelled')), { once: true })),
    );
    const [a, b] = await twoInstances({ sandbox, script: [executeReply('while True: pass')], env: { TURN_LEASE_SEC: '2', ADMIN_USERS: 'UADMIN' } });
    const mention = a.mention('loop forever');
    const thread = a.slack.thread('C1', mention.key.threadTs);
    const handled = a.bot.handleMention(mention);
    await thread.waitFor(() => sandbox.requests.length === 1);
    const turnId = stopButtonValue(thread.messages[0])!;
    expect(await b.bot.stopTurn(turnId, 'U2'), 'someone else').toBe('Only the person who asked, or an admin, can stop this turn.');
    expect(await b.bot.stopTurn('no-such-turn', 'U1')).toBe('This turn has already finished.');
    expect(await b.bot.stopTurn(turnId, 'UADMIN'), 'the holder stops it at its next renewal').toBeUndefined();
    await handled;
    expect(thread.texts.at(-1)).toMatch(/^:octagonal_sign: Stopped after 1 step\. Mention me again to continue\.$/);
    expect(thread.messages[0]!.text).toMatch(/^:octagonal_sign: Stopped/);
  });
});
