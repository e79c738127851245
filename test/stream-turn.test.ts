/**
 * Streamed turns (SLACK_STREAMING=auto) in process: the Bot with recording Slack threads that enforce Slack's
 * stream and agent session rules (test/fakes/fake-slack-streams.ts), a scripted model that streams its text, and a
 * scripted sandbox. Each code step is a task card, the answer streams in, Slack's own Stop control is used when
 * shown, and a stream Slack will not take falls back to the status message and replies without losing anything.
 */
import type { KnownBlock } from '@slack/types';
import { afterEach, describe, expect, test } from 'vitest';
import { loadHistory } from '../controller/agent/history.js';
import { toSlackMrkdwn } from '../controller/slack/mrkdwn.js';
import { startBot, type InProcessBot } from './helpers/in-process-bot.js';
import { stopButtonValue, type RecordingSlackThread } from './helpers/recording-slack-thread.js';
import { executeReply } from './helpers/scripted-model.js';
import { ScriptedSandbox } from './helpers/scripted-sandbox.js';

let harness: InProcessBot | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

const script = () => [executeReply('total = 1 + 2\nprint(total)', 'Adding them up.'), { content: 'The sum is **3**.', totalTokens: 10 }];

describe('streamed turns', () => {
  test('a streamed turn: start, the step as a task card, the answer appended as it is written, stop', async () => {
    let thread: RecordingSlackThread | undefined;
    // The step waits until Slack shows its card in progress: the card is sent while the step runs.
    const sandbox = new ScriptedSandbox(async () => {
      await thread!.waitFor((recording) => recording.streams.streams[0]?.tasks.get('step-1')?.status === 'in_progress');
      return { stdout: '3\n' };
    });
    harness = await startBot({ env: { SLACK_STREAMING: 'auto' }, script: script(), sandbox });
    const mention = harness.mention('add 1 and 2');
    thread = harness.slack.thread('C1', mention.key.threadTs);
    await harness.bot.handleMention(mention);

    const [stream, ...others] = thread.streams.streams;
    expect(others).toStrictEqual([]);
    expect(stream).toMatchObject({ state: 'stopped', recipient: { user: 'U1', team: 'T1' }, markdown: 'Adding them up.\n\nThe sum is **3**.' });
    expect(stream?.tasks.get('step-1')).toStrictEqual({ id: 'step-1', title: 'Adding them up.', status: 'complete', details: 'total = 1 + 2\nprint(total)', output: '3', updates: 2 });
    const methods = thread.calls.map((call) => call.method).filter((method) => method !== 'readReplies');
    expect(methods[0]).toBe('setSessionStatus');
    expect(methods[1]).toBe('startStream');
    expect(methods.filter((method) => method === 'appendStream').length, 'the card and the answer came after the start').toBeGreaterThan(0);
    expect(methods.slice(-2)).toStrictEqual(['stopStream', 'setSessionStatus']);
    expect(thread.streams.statusesOf('C1', mention.key.threadTs)).toStrictEqual(['processing', 'active']);
    expect(thread.messages, 'Slack shows its own Stop control: no status message').toStrictEqual([]);
    expect(harness.model.requests.every((request) => request.onText !== undefined)).toBe(true);
    const history = await loadHistory(harness.store.open(mention.key));
    expect(history.at(-1)).toMatchObject({ role: 'assistant', content: 'The sum is **3**.' });
    harness.model.assertComplete();
  });

  test('when chat.startStream fails: the status message with its steps and Stop button, and the answer as replies', async () => {
    harness = await startBot({ env: { SLACK_STREAMING: 'auto' }, script: script(), sandbox: new ScriptedSandbox(() => ({ stdout: '3\n' })) });
    const mention = harness.mention('add 1 and 2');
    const thread = harness.slack.thread('C1', mention.key.threadTs);
    thread.streams.startError = 'not_allowed_token_type';
    await harness.bot.handleMention(mention);
    await harness.bot.drain();

    expect(thread.streams.streams).toStrictEqual([]);
    const [status, ...replies] = thread.messages;
    expect(status?.text).toMatch(/^:white_check_mark: Done · 1 step/);
    expect(JSON.stringify(status?.blocks)).toContain('Adding them up.');
    expect(stopButtonValue(status), 'the final edit removed the Stop button').toBeUndefined();
    const posted = thread.calls.find((call) => call.method === 'post')?.args as { text: string; blocks?: KnownBlock[] };
    expect(stopButtonValue({ ts: '', edits: 0, ...posted }), 'the status message came with its Stop button').toBeDefined();
    expect(replies.map((reply) => reply.text)).toStrictEqual([toSlackMrkdwn('Adding them up.\n\nThe sum is **3**.')]);
    expect(thread.streams.statusesOf('C1', mention.key.threadTs)).toStrictEqual(['processing', 'active']);
  });

  test.each([
    ['the app is not subscribed to agent_session_stopped', 'warning'],
    ['agents.sessions.setStatus is refused', 'refused'],
  ] as const)('where Slack shows no Stop control (%s) a compact status carries the button', async (_, cause) => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const sandbox = new ScriptedSandbox(async () => {
      await gate;
      return { stdout: '3\n' };
    });
    harness = await startBot({ env: { SLACK_STREAMING: 'auto' }, script: script(), sandbox });
    const mention = harness.mention('add 1 and 2');
    const thread = harness.slack.thread('C1', mention.key.threadTs);
    if (cause === 'warning') thread.streams.subscribedToStop = false;
    else thread.streams.sessionStatusResult = 'feature_disabled';
    const turn = harness.bot.handleMention(mention);
    const status = await thread.waitFor((recording) => recording.messages[0]);
    expect(stopButtonValue(status)).toBeDefined();
    await thread.waitFor((recording) => recording.streams.streams[0]?.tasks.get('step-1')?.status === 'in_progress');
    release();
    await turn;
    await harness.bot.drain();
    expect(thread.messages).toHaveLength(1);
    expect(thread.messages[0]?.text).toMatch(/^:white_check_mark: Done · 1 step/);
    expect(JSON.stringify(thread.messages[0]?.blocks), 'the steps are in the stream, not in the status').not.toContain('print(total)');
    expect(thread.streamedText).toBe('Adding them up.\n\nThe sum is **3**.');
  });

  test('a stream that expires during a long step continues in a new message; the thread gets every word', async () => {
    let thread: RecordingSlackThread | undefined;
    const sandbox = new ScriptedSandbox(async () => {
      await thread!.waitFor((recording) => recording.streams.streams[0]?.tasks.get('step-1')?.status === 'in_progress');
      thread!.streams.expire(); // Slack's undocumented timeout, while the step runs
      return { stdout: '3\n' };
    });
    harness = await startBot({ env: { SLACK_STREAMING: 'auto' }, script: script(), sandbox });
    const mention = harness.mention('add 1 and 2');
    thread = harness.slack.thread('C1', mention.key.threadTs);
    await harness.bot.handleMention(mention);
    const [first, second] = thread.streams.streams;
    expect(first?.state).toBe('expired');
    expect(second).toMatchObject({ state: 'stopped' });
    expect(second?.tasks.get('step-1')?.status).toBe('complete');
    expect(thread.streamedText).toBe('Adding them up.\n\nThe sum is **3**.');
    expect(thread.messages).toStrictEqual([]);
  });
});
