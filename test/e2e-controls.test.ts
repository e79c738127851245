import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { HistoryMessage } from '../controller/agent/history.js';
import { executeCall, lastUserText, userTexts } from './fakes/fake-openai.js';
import { SIGNING_SECRET } from './helpers/bot-process.js';
import { localBackend, startHarness, stopHarness, TEAM, type Harness } from './helpers/harness.js';
import { answerMessages, statusMessages, waitForFinishedStatus } from './helpers/experience.js';
import { messageEvent, nextMessageTs, postEvent } from './helpers/slack-events.js';

/** Issue 7, the controls of the people who run the bot: edit rate, allowlists, replies without a mention, budgets. */


describe('edit rate, allowlists and replies without a mention (issue 7)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(localBackend, {
      STATUS_INTERVAL_MS: '1000',
      ALLOWED_CHANNELS: 'C1,C2',
      ALLOWED_USERS: 'U1, U2',
      REPLY_WITHOUT_MENTION: 'true',
    });
  });
  afterAll(async () => stopHarness(h));

  test('a turn of many fast steps edits its status message at most once per STATUS_INTERVAL_MS', async () => {
    const steps = Array.from({ length: 8 }, (_, index) => ({ content: `Step ${index + 1}`, ...executeCall(`import time\ntime.sleep(0.3)\nprint(${index + 1})`) }));
    h.ai.enqueue(...steps, { content: 'rate done' });
    const { threadTs } = await h.mention('many steps');
    await h.waitForReply(threadTs, /rate done/, 'C1', 30_000);
    const status = await waitForFinishedStatus(h.slack, threadTs);
    const posted = h.slack.callsTo('chat.postMessage').find((call) => call.args.thread_ts === threadTs && /Working on it/.test(String(call.args.text)))!;
    const edits = h.slack.callsTo('chat.update').filter((call) => call.args.ts === status.ts);
    expect(edits.length).toBeGreaterThanOrEqual(3);
    expect(edits.length, 'coalesced: fewer edits than step events').toBeLessThan(steps.length * 2);
    const times = [posted.at, ...edits.map((call) => call.at)];
    const gaps = times.slice(1).map((time, index) => time - times[index]!);
    expect(Math.min(...gaps), `gaps between edits (ms): ${gaps.join(', ')}`).toBeGreaterThanOrEqual(900);
    expect(status.text, 'the last edit shows every step').toMatch(/Done · 8 steps/);
  });

  test('a mention from a channel or a user not on the allowlist gets one polite line and costs nothing', async () => {
    const requestsBefore = h.ai.requests.length;
    const elsewhere = await h.mention('run: print(1)', { channel: 'C9', user: 'U1' });
    const stranger = await h.mention('run: print(2)', { channel: 'C1', user: 'U9' });
    const allowed = await h.mention('allowed one', { channel: 'C2', user: 'U2' });
    await h.waitForReply(allowed.threadTs, /echo: allowed one/, 'C2');
    for (const [channel, threadTs] of [['C9', elsewhere.threadTs], ['C1', stranger.threadTs]] as const) {
      const line = await h.waitForReply(threadTs, /not enabled/, channel);
      expect(line).toMatch(/^Sorry, I'm not enabled for you in this channel\./);
    }
    await h.idle();
    for (const [channel, threadTs] of [['C9', elsewhere.threadTs], ['C1', stranger.threadTs]] as const) {
      expect(h.slack.botMessagesIn(channel, threadTs), 'one line, no status message').toHaveLength(1);
    }
    expect(h.ai.requests.length - requestsBefore, 'only the allowed mention reached the model').toBe(1);
    expect(lastUserText(h.ai.requests.at(-1)!.body)).toBe('allowed one');
    const indicators = h.slack.callsTo('assistant.threads.setStatus').map((call) => call.args.thread_ts);
    expect(indicators).not.toContain(elsewhere.threadTs);
    expect(indicators).not.toContain(stranger.threadTs);
  });

  test('REPLY_WITHOUT_MENTION: a plain reply continues a thread the bot is in, and nothing else', async () => {
    const { threadTs } = await h.mention('remember the word pelican');
    await h.waitForReply(threadTs, /echo: remember the word pelican/);
    const reply = messageEvent({ channel: 'C1', user: 'U1', text: 'what word was it?', thread_ts: threadTs });
    expect((await postEvent(h.bot.eventsUrl, SIGNING_SECRET, reply)).status).toBe(200);
    await h.waitForReply(threadTs, /echo: what word was it\?/);
    const continued = h.ai.requests.find((request) => lastUserText(request.body) === 'what word was it?')!;
    expect(userTexts(continued.body), 'the conversation continues').toStrictEqual(['remember the word pelican', 'what word was it?']);

    // A thread the bot is not in, and a message outside any thread: nothing.
    const root = nextMessageTs();
    const strangers = messageEvent({ channel: 'C1', user: 'U1', text: 'not for the bot', thread_ts: root });
    const topLevel = messageEvent({ channel: 'C1', user: 'U1', text: 'top level chatter' });
    await postEvent(h.bot.eventsUrl, SIGNING_SECRET, strangers);
    await postEvent(h.bot.eventsUrl, SIGNING_SECRET, topLevel);
    const later = await h.mention('a later mention');
    await h.waitForReply(later.threadTs, /echo: a later mention/);
    await h.idle();
    const seenByModel = h.ai.requests.flatMap((request) => userTexts(request.body));
    expect(seenByModel).not.toContainEqual(expect.stringMatching(/not for the bot|top level chatter/));
    const answered = h.slack.calls.filter((call) => call.args.thread_ts === root || call.args.thread_ts === topLevel.ts);
    expect(answered, 'nothing posted there').toStrictEqual([]);

    // Someone not on the allowlist chatting in the bot's thread is ignored, without a refusal each time.
    const postsBefore = h.slack.botMessagesIn('C1', threadTs).length;
    await postEvent(h.bot.eventsUrl, SIGNING_SECRET, messageEvent({ channel: 'C1', user: 'U9', text: 'just chatting', thread_ts: threadTs }));
    await h.idle();
    expect(h.slack.botMessagesIn('C1', threadTs), 'no refusal line for a plain reply').toHaveLength(postsBefore);
    expect(h.ai.requests.flatMap((request) => userTexts(request.body))).not.toContain('just chatting');
  });
});

describe('budgets and the usage footer (issue 7)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(localBackend, {
      TURN_MAX_TOKENS: '500',
      THREAD_MAX_TOKENS: '800',
      TURN_MAX_SANDBOX_SEC: '3',
      THREAD_MAX_SANDBOX_SEC: '4',
      USAGE_FOOTER: 'true',
      STEP_TIMEOUT_SEC: '60',
    });
  });
  afterAll(async () => stopHarness(h));

  const history = async (threadTs: string): Promise<HistoryMessage[]> => {
    const workspace = h.backend.store(h.bot.dataDir).open({ team: TEAM, channel: 'C1', threadTs });
    return (await workspace.readState<HistoryMessage[]>('messages'))?.value ?? [];
  };
  /** The thread's message that ends a turn early, and a check that the turn ended cleanly. */
  const capMessage = async (threadTs: string, pattern: RegExp, timeoutMs = 20_000): Promise<string> => {
    const line = await h.slack.waitFor(() => answerMessages(h.slack, 'C1', threadTs).find((message) => pattern.test(message.text))?.text, timeoutMs);
    await waitForFinishedStatus(h.slack, threadTs); // the turn ended cleanly: its status message is finished
    return line;
  };

  test('TURN_MAX_TOKENS ends the turn before the next step and names the cap', async () => {
    h.ai.enqueue({ ...executeCall("print('should never run')"), usage: { total_tokens: 600 } });
    const { threadTs } = await h.mention('an expensive question');
    const line = await capMessage(threadTs, /budget/);
    expect(line).toMatch(/TURN_MAX_TOKENS/);
    expect(line, 'the thread cap (800) was not reached').not.toMatch(/THREAD_MAX_TOKENS/);
    expect(statusMessages(h.slack, 'C1', threadTs)[0]!.text).toMatch(/Token budget reached/);
    const saved = await history(threadTs);
    expect(saved.filter((message) => message.role === 'tool' && message.meta?.step !== undefined), 'the step never ran').toStrictEqual([]);
    expect(JSON.stringify(saved.at(-1))).toMatch(/token budget/);
  });

  test('THREAD_MAX_TOKENS counts across turns: a later turn stops at it, and the next is refused without a model call', async () => {
    h.ai.enqueue({ content: 'a cheap answer', usage: { total_tokens: 450 } });
    const { threadTs } = await h.mention('first turn');
    const answer = await h.waitForReply(threadTs, /a cheap answer/);
    expect(answer, 'the usage footer').toMatch(/a cheap answer\n\n_450 tokens · 0\.0 s of sandbox_$/);

    h.ai.enqueue({ ...executeCall("print('should never run')"), usage: { total_tokens: 400 } });
    await h.mention('second turn', { threadTs });
    const line = await capMessage(threadTs, /budget/);
    expect(line).toMatch(/THREAD_MAX_TOKENS/);
    expect(line, 'this turn used 400 of its 500').not.toMatch(/TURN_MAX_TOKENS/);

    const requestsBefore = h.ai.requests.length;
    await h.mention('third turn', { threadTs });
    const refused = await capMessage(threadTs, /reached its budget/);
    expect(refused).toMatch(/THREAD_MAX_TOKENS=800/);
    expect(h.ai.requests.length, 'no model call').toBe(requestsBefore);
  });

  test('TURN_MAX_SANDBOX_SEC cuts a long step at the cap and names it', async () => {
    const { threadTs } = await h.mention("run: import time\nprint('before', flush=True)\ntime.sleep(20)\nprint('after')");
    const line = await capMessage(threadTs, /budget/, 40_000);
    expect(line).toMatch(/TURN_MAX_SANDBOX_SEC/);
    expect(line).not.toMatch(/THREAD_MAX_SANDBOX_SEC/);
    const steps = (await history(threadTs)).filter((message) => message.meta?.step !== undefined);
    expect(steps).toHaveLength(1);
    expect(steps[0]!.meta!.step!.stdout).toMatch(/before/);
    expect(steps[0]!.meta!.step!.stdout, 'the step was cut at the cap').not.toMatch(/after/);
    expect(statusMessages(h.slack, 'C1', threadTs)[0]!.text).toMatch(/Sandbox-time budget reached/);
  });

  test('THREAD_MAX_SANDBOX_SEC counts across turns; the footer shows the sandbox seconds used', async () => {
    const { threadTs } = await h.mention("run: import time\ntime.sleep(2)\nprint('slept')");
    const answer = await h.waitForReply(threadTs, /Result: slept/, 'C1', 20_000);
    const [firstStep] = (await history(threadTs)).filter((message) => message.meta?.step !== undefined);
    const seconds = (firstStep!.meta!.step!.durationMs / 1000).toFixed(1);
    const footer = `\n\n_20 tokens · ${seconds} s of sandbox_`;
    expect(answer.slice(-footer.length), answer).toBe(footer);

    await h.mention("run: import time\ntime.sleep(10)\nprint('late')", { threadTs });
    const line = await capMessage(threadTs, /budget/, 40_000);
    expect(line).toMatch(/THREAD_MAX_SANDBOX_SEC/);
    expect(line).not.toMatch(/TURN_MAX_SANDBOX_SEC/);
    const steps = (await history(threadTs)).filter((message) => message.meta?.step !== undefined);
    expect(steps).toHaveLength(2);
    expect(steps[1]!.meta!.step!.stdout, 'the step was cut at what was left of the thread cap').not.toMatch(/late/);

    const requestsBefore = h.ai.requests.length;
    await h.mention('one more', { threadTs });
    const refused = await capMessage(threadTs, /reached its budget/);
    expect(refused).toMatch(/THREAD_MAX_SANDBOX_SEC=4/);
    expect(h.ai.requests.length, 'no model call').toBe(requestsBefore);
  });
});
