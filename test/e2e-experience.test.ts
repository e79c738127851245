import { randomBytes } from 'node:crypto';
import { assert, afterAll, beforeAll, describe, expect, test } from 'vitest';
import { executeCall, lastUserText, messageText, toolResults, userTexts, type ChatRequest } from './fakes/fake-openai.js';
import { SIGNING_SECRET } from './helpers/bot-process.js';
import { localBackend, scriptedModel, startHarness, stopHarness, type Harness } from './helpers/harness.js';
import {
  answerMessages,
  blocksText,
  clickStop,
  descendantsOf,
  eventually,
  paragraphs,
  processesMatching,
  statusMessages,
  stopButtonValue,
  waitForFinishedStatus,
  waitForStopButton,
} from './helpers/experience.js';
import { messageEvent, postEvent } from './helpers/slack-events.js';

/**
 * Issue 7, the user's side: live status edits, Stop, queued mentions, long answers, replies without a
 * mention being ignored by default. The notebook export and the upload preview are in
 * e2e-notebook.test.ts; the admin's controls (allowlists, budgets, edit rate) in e2e-controls.test.ts.
 */

const ADMIN = 'UADMIN';

describe('the Slack experience (issue 7)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(localBackend, { ADMIN_USERS: ADMIN, STATUS_INTERVAL_MS: '50' });
  });
  afterAll(async () => stopHarness(h));

  test('the status message shows each step (title, code preview, output tail, duration) and ends with the steps taken', async () => {
    h.ai.enqueue(
      { content: 'Load the numbers', ...executeCall("import time\ntime.sleep(0.3)\nnumbers = list(range(10))\nprint('loaded', len(numbers))") },
      { content: 'Add them up', ...executeCall("import time\n# a comment\nfirst = 1\nsecond = 2\nthird = 3\ntime.sleep(0.3)\nprint('sum is', sum(numbers))") },
      { content: 'Report the mean', ...executeCall("import time\ntime.sleep(0.3)\nprint('mean is', sum(numbers) / len(numbers))") },
      { content: 'The sum is 45 and the mean is 4.5.' },
    );
    const { threadTs } = await h.mention('three steps please');
    await h.waitForReply(threadTs, /The sum is 45/);
    await waitForFinishedStatus(h.slack, threadTs);

    const [status, ...others] = statusMessages(h.slack, 'C1', threadTs);
    assert(status !== undefined && others.length === 0, 'exactly one status message');
    const edits = h.slack.callsTo('chat.update').filter((call) => call.args.ts === status.ts).map((call) => blocksText(call.args.blocks as unknown[]));
    const shown = (pattern: RegExp) => expect.stringMatching(pattern);
    const duration = String.raw`(\d+ ms|\d+\.\d s)`;
    // Each step, once finished, is shown with its title, its code (collapsed), the tail of its output and its duration.
    expect(edits, 'step 1 with its code and output').toContainEqual(shown(new RegExp(String.raw`\*1\. Load the numbers\* · ${duration}\n\`\`\`import time\ntime\.sleep\(0\.3\)\nnumbers = list\(range\(10\)\)\nprint\('loaded', len\(numbers\)\)\`\`\`\n> loaded 10`)));
    expect(edits, 'step 2 collapsed to 4 lines + count').toContainEqual(shown(new RegExp(String.raw`\*2\. Add them up\* · ${duration}\n\`\`\`import time\n# a comment\nfirst = 1\nsecond = 2\n… \(\+3 lines\)\`\`\`\n> sum is 45`)));
    expect(edits, 'step 3 with its output').toContainEqual(shown(new RegExp(String.raw`\*3\. Report the mean\* · ${duration}\n\`\`\`[\s\S]*\`\`\`\n> mean is 4\.5`)));
    // While a step runs it says so, with the running total.
    expect(edits, 'a running total while step 2 runs').toContainEqual(shown(/Running… step 2 · \d/));
    expect(edits, 'step 2 shown while it runs').toContainEqual(shown(/\*2\. Add them up\* · running…/));

    // The end: the steps taken, the outcome, no Stop button.
    const final = h.slack.botMessagesIn('C1', threadTs).find((message) => message.ts === status.ts)!;
    expect(final.text).toMatch(/Done · 3 steps · /);
    const finalText = blocksText(final.blocks);
    expect(finalText).toMatch(new RegExp(String.raw`\*1\. Load the numbers\* · ${duration}[\s\S]*\*2\. Add them up\* · ${duration}[\s\S]*\*3\. Report the mean\* · ${duration}`));
    expect(stopButtonValue(final.blocks), 'no Stop button once the turn is done').toBeUndefined();
    expect(edits.length, 'edited in place as it went').toBeGreaterThanOrEqual(4);
    expect(h.slack.unexpected).toStrictEqual([]);
  });

  test("Slack's thread status indicator is set and cleared; when it fails, the turn still works", async () => {
    const first = await h.mention('indicator please');
    await h.waitForReply(first.threadTs, /echo: indicator please/);
    const statuses = () => h.slack.callsTo('assistant.threads.setStatus').filter((call) => call.args.thread_ts === first.threadTs);
    await h.slack.waitFor(() => statuses().length >= 2);
    expect(statuses().map((call) => [call.args.channel_id, call.args.status])).toStrictEqual([['C1', 'is working…'], ['C1', '']]);

    h.slack.setStatusResult = 'not_allowed_token_type';
    try {
      const second = await h.mention('run: print(6 * 7)');
      await h.waitForReply(second.threadTs, /Result: 42/);
      const status = await waitForFinishedStatus(h.slack, second.threadTs);
      expect(status.text, 'the edited message is the indicator').toMatch(/Done · 1 step/);
      expect(h.slack.callsTo('assistant.threads.setStatus').filter((call) => call.args.thread_ts === second.threadTs), 'not retried once refused').toHaveLength(1);
    } finally {
      h.slack.setStatusResult = 'ok';
    }
  });

  test('Stop ends a long step: its processes are gone, the thread says so, the history records it, the next mention works', async () => {
    const marker = `7${randomBytes(3).readUIntBE(0, 3)}.5`;
    const { threadTs } = await h.mention(
      `run: import subprocess, time\nchild = subprocess.Popen(['sleep', '${marker}'])\nprint('started', flush=True)\ntime.sleep(1000)\nprint('never printed')`,
    );
    await eventually(async () => (await processesMatching(`sleep ${marker}`)).length > 0, 20_000, () => h.slack.dump());
    const commandLines = (await descendantsOf(h.bot.child.pid!)).map((info) => info.commandLine);
    expect(commandLines, 'the step runs under the bot').toContainEqual(expect.stringContaining('runner.py'));
    const button = await waitForStopButton(h, threadTs);

    expect(await clickStop(h, { user: 'U1', threadTs, button })).toBe(200);
    const stopped = await h.slack.waitFor(() => answerMessages(h.slack, 'C1', threadTs).find((message) => /Stopped/.test(message.text)));
    expect(stopped.text).toMatch(/Stopped after 1 step\. Mention me again to continue\./);
    // The step's processes are gone. The thread's runner itself may stay: it is the thread's warm session
    // (issue 13), idle now, and Stop ends the session only when the step does not end within its grace.
    await eventually(
      async () => (await processesMatching(`sleep ${marker}`)).length === 0 && !(await descendantsOf(h.bot.child.pid!)).some((info) => info.commandLine.includes(marker)),
      5000,
      async () => JSON.stringify(await descendantsOf(h.bot.child.pid!)),
    );
    const final = await waitForFinishedStatus(h.slack, threadTs);
    expect(final.text).toMatch(/Stopped/);
    expect(stopButtonValue(final.blocks), 'the Stop button is gone').toBeUndefined();
    expect(answerMessages(h.slack, 'C1', threadTs).map((message) => message.text)).not.toContainEqual(expect.stringMatching(/never printed|Result:/));

    // Clicking again: the turn is over.
    expect(await clickStop(h, { user: 'U1', threadTs, button })).toBe(200);
    await h.slack.waitFor(() => h.slack.callsTo('chat.postEphemeral').find((call) => call.args.thread_ts === threadTs && /already finished/.test(String(call.args.text))));

    const before = h.ai.requests.length;
    await h.mention('what happened?', { threadTs });
    await h.waitForReply(threadTs, /echo: what happened\?/);
    const request = h.ai.requests[before]!.body;
    const history = request.messages.map((message) => `${message.role}: ${messageText(message)}`).join('\n');
    expect(history).toMatch(/tool: The user stopped this step before it finished\./);
    expect(history).toMatch(/assistant: \(The user <@U1> or an admin stopped this turn\.\)/);
    expect(h.slack.unexpected).toStrictEqual([]);
  });

  test('Stop while the model is still thinking aborts the model request and ends the turn as stopped', async () => {
    h.ai.enqueue({ content: 'an answer that comes too late', delayMs: 60_000 });
    const { threadTs } = await h.mention('think about it for a long while');
    const request = await h.ai.waitFor((ai) => ai.requests.find((entry) => lastUserText(entry.body) === 'think about it for a long while'), 20_000);
    const button = await waitForStopButton(h, threadTs);

    expect(await clickStop(h, { user: 'U1', threadTs, button })).toBe(200);
    await h.ai.waitFor(() => request.aborted, 10_000); // the fake saw the connection closed before it answered
    const stopped = await h.slack.waitFor(() => answerMessages(h.slack, 'C1', threadTs).find((message) => /Stopped/.test(message.text)));
    expect(stopped.text).toBe(':octagonal_sign: Stopped. Mention me again to continue.');
    const final = await waitForFinishedStatus(h.slack, threadTs);
    expect(final.text).toMatch(/Stopped · 0 steps/);
    expect(request.status, 'never answered').toBe(0);
    expect(answerMessages(h.slack, 'C1', threadTs).map((message) => message.text)).not.toContainEqual(expect.stringMatching(/too late/));
  });

  test('only the person who asked or an admin can stop a turn: others get an ephemeral refusal and the turn goes on', async () => {
    const marker = `8${randomBytes(3).readUIntBE(0, 3)}.5`;
    const { threadTs } = await h.mention(`run: import subprocess, time\nsubprocess.Popen(['sleep', '${marker}'])\ntime.sleep(1000)`);
    await eventually(async () => (await processesMatching(`sleep ${marker}`)).length > 0, 20_000, () => h.slack.dump());
    const button = await waitForStopButton(h, threadTs);

    await clickStop(h, { user: 'U2', threadTs, button });
    const refusal = await h.slack.waitFor(() => h.slack.callsTo('chat.postEphemeral').find((call) => call.args.user === 'U2' && call.args.thread_ts === threadTs));
    expect(refusal.args.channel).toBe('C1');
    expect(String(refusal.args.text)).toMatch(/Only the person who asked, or an admin, can stop/);
    expect((await processesMatching(`sleep ${marker}`)).length, 'the step still runs').toBeGreaterThan(0);
    expect(h.slack.botMessagesIn('C1', threadTs).map((message) => message.text), 'the turn goes on').not.toContainEqual(expect.stringMatching(/Stopped/));
    expect(stopButtonValue(statusMessages(h.slack, 'C1', threadTs)[0]!.blocks)).toBeDefined();

    await clickStop(h, { user: ADMIN, threadTs, button });
    await h.waitForReply(threadTs, /Stopped/);
    await eventually(async () => (await processesMatching(`sleep ${marker}`)).length === 0, 5000, () => 'the sleep process is still there');
    expect(h.slack.callsTo('chat.postEphemeral').map((call) => call.args.user), 'no refusal for the admin').not.toContain(ADMIN);
  });

  test('a mention while a turn runs is queued, told so, and run after it, never in parallel', async () => {
    const first = await h.mention("run: import time\ntime.sleep(1.5)\nprint('first done')");
    await h.ai.waitFor(() => h.ai.requests.find((request) => /first done/.test(lastUserText(request.body))));
    await h.mention('second question', { threadTs: first.threadTs });
    const notice = await h.waitForReply(first.threadTs, /I'll get to this after the current/);
    expect(notice).toMatch(/after the current turn in this thread/);
    await h.waitForReply(first.threadTs, /echo: second question/);

    const firstAnswer = h.slack.callsTo('chat.postMessage').find((call) => call.args.thread_ts === first.threadTs && /Result: first done/.test(String(call.args.text)))!;
    const ofThread = h.ai.requests.filter((request) => userTexts(request.body).some((text) => /first done/.test(text)));
    const secondRequests = ofThread.filter((request) => lastUserText(request.body) === 'second question');
    const firstRequests = ofThread.filter((request) => lastUserText(request.body) !== 'second question');
    expect(firstRequests, 'the first turn: the step, then the answer').toHaveLength(2);
    expect(secondRequests).toHaveLength(1);
    expect(secondRequests[0]!.at, 'the second turn started after the first one answered').toBeGreaterThanOrEqual(firstAnswer.at);
    expect(Math.max(...firstRequests.map((request) => request.at))).toBeLessThanOrEqual(secondRequests[0]!.at);
    expect(toolResults(secondRequests[0]!.body).map((result) => result.content), 'the second turn sees the first').toContainEqual(expect.stringMatching(/first done/));
    const noticeCall = h.slack.callsTo('chat.postMessage').find((call) => call.args.thread_ts === first.threadTs && /I'll get to this/.test(String(call.args.text)))!;
    expect(noticeCall.at, 'the notice came while the first turn ran').toBeLessThan(firstAnswer.at);
  });

  test('turns of different threads run at the same time, and only the busy thread is told to wait', async () => {
    // Thread A's model request is held open until thread B's arrives. With one queue for every thread, B would
    // wait behind A (and be told so), and A would give up waiting.
    const isFor = (request: ChatRequest, text: string) => lastUserText(request) === text;
    h.ai.script(async (request) => {
      if (!isFor(request, 'overlap A')) return scriptedModel(request);
      const sawB = await h.ai.waitFor((ai) => ai.requests.some((entry) => isFor(entry.body, 'overlap B')), 10_000).then(
        () => true,
        () => false,
      );
      return { content: sawB ? 'A ran beside B' : 'A ran alone' };
    });
    try {
      const a = await h.mention('overlap A');
      await h.ai.waitFor((ai) => ai.requests.find((entry) => isFor(entry.body, 'overlap A')));
      const b = await h.mention('overlap B');
      await h.waitForReply(b.threadTs, /echo: overlap B/);
      expect(await h.waitForReply(a.threadTs, /A ran/)).toBe('A ran beside B');
      for (const thread of [a, b]) {
        const texts = h.slack.botMessagesIn('C1', thread.threadTs).map((message) => message.text);
        expect(texts, 'no "queued" notice in a thread that was not busy').not.toContainEqual(expect.stringMatching(/I'll get to this/));
      }
    } finally {
      h.ai.script(scriptedModel);
    }
  });

  test('a long answer is split at paragraph boundaries into messages within the limit', async () => {
    const parts = paragraphs(40, 34);
    const answer = parts.join('\n\n');
    expect(answer.length).toBeGreaterThanOrEqual(10_000);
    expect(answer.length).toBeLessThan(12_000);
    h.ai.enqueue({ content: answer });
    const { threadTs } = await h.mention('a long one please');
    await h.waitForReply(threadTs, /End of paragraph 39\./);

    const messages = answerMessages(h.slack, 'C1', threadTs).map((message) => message.text);
    expect(messages.length).toBeGreaterThanOrEqual(3);
    for (const message of messages) {
      expect(message.length, 'a message within the limit').toBeLessThanOrEqual(4000);
      expect(message, 'starts at a paragraph').toMatch(/^Paragraph \d+ begins:/);
      expect(message, 'ends at a paragraph').toMatch(/End of paragraph \d+\.$/);
    }
    expect(messages.join('\n\n'), 'nothing lost, nothing repeated, in order').toBe(answer);
    expect(h.slack.uploads.filter((upload) => upload.threadTs === threadTs)).toStrictEqual([]);
    expect(h.slack.unexpected).toStrictEqual([]);
  });

  test('a very long answer is attached as a file with its start in the thread', async () => {
    const answer = paragraphs(200, 34).join('\n\n');
    expect(answer.length).toBeGreaterThanOrEqual(50_000);
    h.ai.enqueue({ content: answer });
    const { threadTs } = await h.mention('a very long one please');
    const upload = await h.slack.waitFor(() => h.slack.uploads.find((candidate) => candidate.threadTs === threadTs), 20_000);
    expect(upload.bytes.toString('utf8'), 'the whole answer, as written').toBe(answer);
    expect(upload.filename).toMatch(/\.md$/);
    const messages = answerMessages(h.slack, 'C1', threadTs);
    expect(messages, 'one message with the start').toHaveLength(1);
    expect(messages[0]!.text).toMatch(/^Paragraph 0 begins:/);
    expect(messages[0]!.text.length).toBeLessThanOrEqual(4000);
    expect(messages[0]!.text).toMatch(/attached as a file/);
    expect(h.slack.unexpected).toStrictEqual([]);
  });

  test('by default, a reply without a mention in a thread the bot answered does nothing', async () => {
    const { threadTs } = await h.mention('hello there');
    await h.waitForReply(threadTs, /echo: hello there/);
    await waitForFinishedStatus(h.slack, threadTs);
    const plain = messageEvent({ channel: 'C1', user: 'U1', text: 'plain reply without mention', thread_ts: threadTs });
    expect((await postEvent(h.bot.eventsUrl, SIGNING_SECRET, plain)).status).toBe(200);
    // A later mention in the same thread is answered; the plain reply never reached the model.
    await h.mention('and with a mention', { threadTs });
    await h.waitForReply(threadTs, /echo: and with a mention/);
    await h.idle();
    expect(h.ai.requests.flatMap((request) => userTexts(request.body))).not.toContainEqual(expect.stringMatching(/plain reply without mention/));
    expect(answerMessages(h.slack, 'C1', threadTs)).toHaveLength(2);
  });
});
