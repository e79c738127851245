import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadHistory } from '../controller/agent/history.js';
import { lastUserText, toolResults } from './fakes/fake-openai.js';
import { SIGNING_SECRET } from './helpers/bot-process.js';
import { statusMessages } from './helpers/experience.js';
import { BOT_USER, localBackend, startHarness, stopHarness, TEAM, type Harness } from './helpers/harness.js';
import { hasModule } from './helpers/runner-process.js';
import { agentSessionStoppedEvent, mentionEvent, mentionText, messageEvent, nextMessageTs, parentChangedEvent, postEvent } from './helpers/slack-events.js';

/**
 * Issue 16, the Slack-native experience, from the outside: the bot as operators start it (SLACK_STREAMING=auto),
 * signed events in, the real web-api client against FakeSlack (which enforces Slack's stream, agent session and
 * table rules), the real openai client streaming from FakeOpenAI, and the local sandbox with the real runner.
 */

/** Polls `check` until it holds (for what no fake can announce: a file the step wrote); fails after `timeoutMs`. */
async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('Slack-native experience (issue 16)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(localBackend, { SLACK_STREAMING: 'auto' });
  });
  afterAll(async () => stopHarness(h));

  const streamsIn = (threadTs: string) => h.slack.streams.streams.filter((stream) => stream.threadTs === threadTs);
  const userMessage = (index = -1) => lastUserText(h.ai.requests.at(index)!.body);
  /** A message someone posts in the thread without mentioning the bot: Slack holds it and sends the event. */
  const postInThread = async (input: { threadTs: string; user: string; text: string; files?: never[] }) => {
    const event = messageEvent({ channel: 'C1', ts: nextMessageTs(), thread_ts: input.threadTs, user: input.user, text: input.text, ...(input.files ? { files: input.files } : {}) });
    h.slack.seedFromEvent(event);
    await postEvent(h.bot.eventsUrl, SIGNING_SECRET, event);
  };

  test('a streamed turn: session processing, start, the step as a task card, the answer appended, stop, session active', async () => {
    const { threadTs } = await h.mention('run: print(6 * 7)');
    await h.waitForReply(threadTs, /Result: 42/);
    await h.idle();
    const [stream, ...others] = streamsIn(threadTs);
    expect(others).toStrictEqual([]);
    expect(stream).toMatchObject({ state: 'stopped', recipient: { user: 'U1', team: TEAM }, mode: 'chunks' });
    expect(stream?.markdown).toMatch(/Result: 42/);
    expect(stream?.tasks.get('step-1')).toMatchObject({ status: 'complete', details: 'print(6 * 7)', output: '42', updates: 2 });
    expect(h.slack.streams.statusesOf('C1', threadTs)).toStrictEqual(['processing', 'active']);
    const order = h.slack.calls.filter((call) => call.args.thread_ts === threadTs || call.args.ts === stream?.ts).map((call) => call.method);
    expect(order.indexOf('agents.sessions.setStatus')).toBeLessThan(order.indexOf('chat.startStream'));
    expect(order.lastIndexOf('chat.stopStream')).toBeLessThan(order.lastIndexOf('agents.sessions.setStatus'));
    const [first, ...later] = stream!.calls;
    expect(first?.chunks, 'the card is shown while the step runs').toStrictEqual([expect.objectContaining({ type: 'task_update', status: 'in_progress' })]);
    expect(later.flatMap((call) => call.chunks).filter((chunk) => chunk.type === 'markdown_text').length, 'the answer came after the step').toBeGreaterThan(0);
    expect(statusMessages(h.slack, 'C1', threadTs), "Slack's own Stop control: no status message").toStrictEqual([]);
    expect(h.ai.requests.at(-1)?.body.stream).toBe(true);
    expect(h.slack.unexpected).toStrictEqual([]);
  });

  test('fall-back when chat.startStream fails: the status message and replies, nothing lost', async () => {
    h.slack.streams.startError = 'not_allowed_token_type';
    try {
      const { threadTs } = await h.mention('run: print(5)');
      await h.waitForReply(threadTs, /Result: 5/);
      await h.idle();
      expect(streamsIn(threadTs)).toStrictEqual([]);
      const [status] = statusMessages(h.slack, 'C1', threadTs);
      expect(status?.text).toMatch(/Done · 1 step/);
      expect(JSON.stringify(status?.blocks)).toContain('print(5)');
    } finally {
      h.slack.streams.startError = undefined;
    }
  });

  test('a file shared without a mention, then a mention: the file is in the workspace and the model is told', async () => {
    const { threadTs } = await h.mention('hello');
    await h.waitForReply(threadTs, /echo: hello/);
    await h.idle();
    const file = h.slack.addFile({ name: 'q3.csv', content: 'region,amount\neast,4\nwest,2\n', mimetype: 'text/csv' });
    await postInThread({ threadTs, user: 'U2', text: '', files: [file as never] });
    const requests = h.ai.requests.length;
    await h.idle();
    expect(h.ai.requests.length, 'a share without a mention starts nothing').toBe(requests);
    await h.mention('run: print(open("q3.csv").read().splitlines()[1])', { threadTs });
    await h.waitForReply(threadTs, /Result: east,4/);
    expect(userMessage(requests)).toMatch(/<@U2> shared q3\.csv to \.\/q3\.csv \(\d+ bytes\)/);
    expect(userMessage(requests)).toMatch(/A first look at the uploaded tables/);
  });

  test('a mention event without files whose message has one: the file is found on the message', async () => {
    const file = h.slack.addFile({ name: 'late.csv', content: 'a,b\n1,2\n', mimetype: 'text/csv' });
    const ts = nextMessageTs();
    const text = mentionText(BOT_USER, 'run: print(open("late.csv").read().split()[1])');
    h.slack.seedMessage({ channel: 'C1', ts, user: 'U1', text, files: [file] });
    await postEvent(h.bot.eventsUrl, SIGNING_SECRET, mentionEvent({ channel: 'C1', user: 'U1', text, ts }));
    await h.waitForReply(ts, /Result: 1,2/);
    expect(userMessage()).toMatch(/I uploaded late\.csv to \.\/late\.csv/);
  });

  test("other people's messages between turns reach the model, attributed, the oldest dropped first", async () => {
    const { threadTs } = await h.mention('first');
    await h.waitForReply(threadTs, /echo: first/);
    await h.idle();
    await postInThread({ threadTs, user: 'U2', text: 'March looks off to me' });
    for (let index = 0; index < 24; index++) await postInThread({ threadTs, user: 'U3', text: `note ${index}` });
    await h.mention('second', { threadTs });
    await h.waitForReply(threadTs, /echo: .*second/s);
    const message = userMessage();
    expect(message).toMatch(/^Others wrote in this thread since my last reply/);
    expect(message).toMatch(/<@U3>: note 23\n\nsecond$/);
    expect(message, 'at most 20 messages: the oldest went first').not.toContain('March looks off');
    expect(message).toMatch(/\(5 earlier messages left out\)/);
    expect(message, 'the bot’s own answers are not context').not.toContain('echo: first');
  });

  test("the parent's message_changed (a new reply_count) and message_replied start nothing", async () => {
    const { threadTs, ts } = await h.mention('parent');
    await h.waitForReply(threadTs, /echo: parent/);
    await h.idle();
    const requests = h.ai.requests.length;
    const before = h.slack.botMessagesIn('C1', threadTs).length;
    const parent = { ts, user: 'U1', text: mentionText(BOT_USER, 'parent') };
    for (const form of ['message_changed', 'message_replied'] as const) {
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, parentChangedEvent({ channel: 'C1', parent, replyCount: 2, form }));
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, { ...parentChangedEvent({ channel: 'C1', parent, replyCount: 3, form }), channel_type: 'im' });
    }
    await h.idle();
    expect(h.ai.requests.length).toBe(requests);
    expect(h.slack.botMessagesIn('C1', threadTs)).toHaveLength(before);
  });

  test('agent_session_stopped from someone else does not stop the step; from the asker it does, and history records it', async () => {
    const { threadTs } = await h.mention('run: import time\nopen("started", "w").close()\ntime.sleep(120)');
    await h.slack.waitFor((slack) => streamsIn(threadTs)[0]?.tasks.get('step-1')?.status === 'in_progress', 20_000);
    // Pressed once the code runs (a Stop while the runner is still being prepared is a race of the sandbox's own).
    const workspace = h.backend.store(h.bot.dataDir).open({ team: TEAM, channel: 'C1', threadTs });
    await until(async () => (await workspace.stat('started')) !== undefined, 20_000);
    const press = async (user: string) => {
      const stopped = h.slack.streams.stopByUser('C1', threadTs); // Slack stops the app's streams on any press
      await postEvent(h.bot.eventsUrl, SIGNING_SECRET, agentSessionStoppedEvent({ channel: 'C1', user, threadTs, streamingMessageTs: stopped }), { teamId: TEAM });
    };
    await press('U2');
    const refusal = await h.slack.waitFor((slack) => slack.callsTo('chat.postEphemeral').find((call) => call.args.user === 'U2' && call.args.thread_ts === threadTs));
    expect(refusal.args.text).toBe('Only the person who asked, or an admin, can stop this turn.');
    await h.slack.waitFor((slack) => slack.streams.statusesOf('C1', threadTs).filter((status) => status === 'processing').length === 2);
    expect(h.slack.botMessagesIn('C1', threadTs).some((message) => /Stopped/.test(message.text)), 'the turn goes on').toBe(false);

    await press('U1');
    await h.waitForReply(threadTs, /Stopped after 1 step/, 'C1', 30_000);
    await h.idle();
    expect(h.slack.streams.statusesOf('C1', threadTs).at(-1)).toBe('active');
    const history = await loadHistory(h.backend.store(h.bot.dataDir).open({ team: TEAM, channel: 'C1', threadTs }));
    expect(history.some((message) => message.role === 'tool' && message.content === 'The user stopped this step before it finished.')).toBe(true);
    expect(history.at(-1)).toStrictEqual({ role: 'assistant', content: '(The user <@U1> or an admin stopped this turn.)' });
  });

  test.skipIf(!hasModule('pandas'))('a DataFrame result is shown as a table block within Slack’s limits, the whole of it as CSV', async () => {
    const code = 'import pandas as pd\npd.DataFrame({f"c{j}": [f"value {i}-{j} " * 3 for i in range(1000)] for j in range(30)})';
    const { threadTs } = await h.mention(`run: ${code}`);
    await h.waitForReply(threadTs, /Result:/, 'C1', 30_000);
    await h.idle();
    const tableMessage = h.slack.botMessagesIn('C1', threadTs).find((message) => (message.blocks ?? []).some((block) => (block as { type?: string }).type === 'table'));
    const table = tableMessage?.blocks?.find((block) => (block as { type?: string }).type === 'table') as { rows: Array<Array<{ text: string }>> };
    expect(table.rows[0]?.map((cell) => cell.text)).toStrictEqual(Array.from({ length: 20 }, (_, j) => `c${j}`));
    expect(table.rows.length).toBeGreaterThan(10);
    expect(table.rows.flat().reduce((sum, cell) => sum + cell.text.length, 0)).toBeLessThanOrEqual(10_000);
    expect(tableMessage?.text).toMatch(/1,000 rows × 30 columns, showing the first \d+ rows and 20 of 30 columns/);
    const csv = h.slack.uploads.find((upload) => upload.threadTs === threadTs && upload.filename === 'table-1-1.csv');
    expect(csv?.bytes.toString('utf8').trimEnd().split('\n')).toHaveLength(1001);
    const result = toolResults(h.ai.requests.at(-1)!.body, { sinceLastUser: true }).at(-1)?.content ?? '';
    expect(result).toMatch(/\[table 1 shown to the user: 1000 rows × 30 columns\]/);
    expect(result.length, 'the model gets the compact text, not the repr').toBeLessThan(6_000);
    expect(streamsIn(threadTs)[0]?.tasks.get('step-1')?.output).toMatch(/table shown below/);
    expect(h.slack.unexpected).toStrictEqual([]);
  });
});
