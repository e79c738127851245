import { randomBytes } from 'node:crypto';
import { assert, afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { executeCall, lastUserText, messageText, toolResults, userTexts } from './fakes/fake-openai.js';
import { SIGNING_SECRET } from './helpers/bot-process.js';
import { startHarness, stopHarness, type Backend, type Harness } from './helpers/harness.js';
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

const localBackend = async (): Promise<Backend> => ({ env: {}, store: (dataDir) => new LocalWorkspaceStore(dataDir), close: async () => {} });
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
    const shown = (pattern: RegExp) => edits.some((text) => pattern.test(text));
    const duration = String.raw`(\d+ ms|\d+\.\d s)`;
    // Each step, once finished, is shown with its title, its code (collapsed), the tail of its output and its duration.
    expect(shown(new RegExp(String.raw`\*1\. Load the numbers\* · ${duration}\n\`\`\`import time\ntime\.sleep\(0\.3\)\nnumbers = list\(range\(10\)\)\nprint\('loaded', len\(numbers\)\)\`\`\`\n> loaded 10`)), edits.join('\n---\n')).toBeTruthy();
    expect(shown(new RegExp(String.raw`\*2\. Add them up\* · ${duration}\n\`\`\`import time\n# a comment\nfirst = 1\nsecond = 2\n… \(\+3 lines\)\`\`\`\n> sum is 45`)), 'step 2 collapsed to 4 lines + count').toBeTruthy();
    expect(shown(new RegExp(String.raw`\*3\. Report the mean\* · ${duration}\n\`\`\`[\s\S]*\`\`\`\n> mean is 4\.5`)), 'step 3 with its output').toBeTruthy();
    // While a step runs it says so, with the running total.
    expect(shown(/Running… step 2 · \d/), 'a running total while step 2 runs').toBeTruthy();
    expect(shown(/\*2\. Add them up\* · running…/), 'step 2 shown while it runs').toBeTruthy();

    // The end: the steps taken, the outcome, no Stop button.
    const final = h.slack.botMessagesIn('C1', threadTs).find((message) => message.ts === status.ts)!;
    expect(final.text).toMatch(/Done · 3 steps · /);
    const finalText = blocksText(final.blocks);
    expect(finalText).toMatch(new RegExp(String.raw`\*1\. Load the numbers\* · ${duration}[\s\S]*\*2\. Add them up\* · ${duration}[\s\S]*\*3\. Report the mean\* · ${duration}`));
    expect(stopButtonValue(final.blocks), 'no Stop button once the turn is done').toBe(undefined);
    expect(edits.length >= 4, `edited in place as it went (${edits.length} edits)`).toBeTruthy();
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
      expect(h.slack.callsTo('assistant.threads.setStatus').filter((call) => call.args.thread_ts === second.threadTs).length, 'not retried once refused').toBe(1);
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
    expect((await descendantsOf(h.bot.child.pid!)).some((info) => info.commandLine.includes('runner.py')), 'the step runs under the bot').toBeTruthy();
    const button = await waitForStopButton(h, threadTs);

    expect(await clickStop(h, { user: 'U1', threadTs, button })).toBe(200);
    const stopped = await h.slack.waitFor(() => answerMessages(h.slack, 'C1', threadTs).find((message) => /Stopped/.test(message.text)));
    expect(stopped.text).toMatch(/Stopped after 1 step\. Mention me again to continue\./);
    await eventually(
      async () => (await processesMatching(`sleep ${marker}`)).length === 0 && !(await descendantsOf(h.bot.child.pid!)).some((info) => info.commandLine.includes('runner.py')),
      5000,
      async () => JSON.stringify(await descendantsOf(h.bot.child.pid!)),
    );
    const final = await waitForFinishedStatus(h.slack, threadTs);
    expect(final.text).toMatch(/Stopped/);
    expect(stopButtonValue(final.blocks), 'the Stop button is gone').toBe(undefined);
    expect(!answerMessages(h.slack, 'C1', threadTs).some((message) => /never printed|Result:/.test(message.text))).toBeTruthy();

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

  test('only the person who asked or an admin can stop a turn: others get an ephemeral refusal and the turn goes on', async () => {
    const marker = `8${randomBytes(3).readUIntBE(0, 3)}.5`;
    const { threadTs } = await h.mention(`run: import subprocess, time\nsubprocess.Popen(['sleep', '${marker}'])\ntime.sleep(1000)`);
    await eventually(async () => (await processesMatching(`sleep ${marker}`)).length > 0, 20_000, () => h.slack.dump());
    const button = await waitForStopButton(h, threadTs);

    await clickStop(h, { user: 'U2', threadTs, button });
    const refusal = await h.slack.waitFor(() => h.slack.callsTo('chat.postEphemeral').find((call) => call.args.user === 'U2' && call.args.thread_ts === threadTs));
    expect(refusal.args.channel).toBe('C1');
    expect(String(refusal.args.text)).toMatch(/Only the person who asked, or an admin, can stop/);
    expect((await processesMatching(`sleep ${marker}`)).length > 0, 'the step still runs').toBeTruthy();
    expect(!h.slack.botMessagesIn('C1', threadTs).some((message) => /Stopped/.test(message.text)), 'the turn goes on').toBeTruthy();
    expect(stopButtonValue(statusMessages(h.slack, 'C1', threadTs)[0]!.blocks)).not.toBe(undefined);

    await clickStop(h, { user: ADMIN, threadTs, button });
    await h.waitForReply(threadTs, /Stopped/);
    await eventually(async () => (await processesMatching(`sleep ${marker}`)).length === 0, 5000, () => 'the sleep process is still there');
    expect(!h.slack.callsTo('chat.postEphemeral').some((call) => call.args.user === ADMIN), 'no refusal for the admin').toBeTruthy();
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
    expect(firstRequests.length, 'the first turn: the step, then the answer').toBe(2);
    expect(secondRequests.length).toBe(1);
    expect(secondRequests[0]!.at >= firstAnswer.at, 'the second turn started after the first one answered').toBeTruthy();
    expect(firstRequests.every((request) => request.at <= secondRequests[0]!.at)).toBeTruthy();
    expect(toolResults(secondRequests[0]!.body).some((result) => /first done/.test(result.content)), 'the second turn sees the first').toBeTruthy();
    const noticeCall = h.slack.callsTo('chat.postMessage').find((call) => /I'll get to this/.test(String(call.args.text)))!;
    expect(noticeCall.at < firstAnswer.at, 'the notice came while the first turn ran').toBeTruthy();
  });

  test('a long answer is split at paragraph boundaries into messages within the limit', async () => {
    const parts = paragraphs(40, 34);
    const answer = parts.join('\n\n');
    expect(answer.length >= 10_000 && answer.length < 12_000, `answer length ${answer.length}`).toBeTruthy();
    h.ai.enqueue({ content: answer });
    const { threadTs } = await h.mention('a long one please');
    await h.waitForReply(threadTs, /End of paragraph 39\./);

    const messages = answerMessages(h.slack, 'C1', threadTs).map((message) => message.text);
    expect(messages.length >= 3, `${messages.length} messages`).toBeTruthy();
    for (const message of messages) {
      expect(message.length <= 4000, `a message of ${message.length} characters`).toBeTruthy();
      expect(message, 'starts at a paragraph').toMatch(/^Paragraph \d+ begins:/);
      expect(message, 'ends at a paragraph').toMatch(/End of paragraph \d+\.$/);
    }
    expect(messages.join('\n\n'), 'nothing lost, nothing repeated, in order').toBe(answer);
    expect(h.slack.uploads.filter((upload) => upload.threadTs === threadTs)).toStrictEqual([]);
    expect(h.slack.unexpected).toStrictEqual([]);
  });

  test('a very long answer is attached as a file with its start in the thread', async () => {
    const answer = paragraphs(200, 34).join('\n\n');
    expect(answer.length >= 50_000, `answer length ${answer.length}`).toBeTruthy();
    h.ai.enqueue({ content: answer });
    const { threadTs } = await h.mention('a very long one please');
    const upload = await h.slack.waitFor(() => h.slack.uploads.find((candidate) => candidate.threadTs === threadTs), 20_000);
    expect(upload.bytes.toString('utf8'), 'the whole answer, as written').toBe(answer);
    expect(upload.filename).toMatch(/\.md$/);
    const messages = answerMessages(h.slack, 'C1', threadTs);
    expect(messages.length, 'one message with the start').toBe(1);
    expect(messages[0]!.text.startsWith('Paragraph 0 begins:')).toBeTruthy();
    expect(messages[0]!.text.length <= 4000).toBeTruthy();
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
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(!h.ai.requests.some((request) => userTexts(request.body).some((text) => /plain reply without mention/.test(text)))).toBeTruthy();
    expect(answerMessages(h.slack, 'C1', threadTs).length).toBe(2);
  });
});
