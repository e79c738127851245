/**
 * The streamer of one reply (controller/slack/slack-stream.ts) against a RecordingSlackThread, which enforces Slack's
 * stream rules (test/fakes/fake-slack-streams.ts): order kept, one call at a time with what gathered meanwhile,
 * 12,000 characters of markdown per call, a new message when Slack ended the stream, and what never reached Slack
 * handed back to the caller.
 */
import { describe, expect, test } from 'vitest';
import { silentLogger } from '../controller/logger.js';
import { SlackStream } from '../controller/slack/slack-stream.js';
import { StreamPacer } from '../controller/slack/stream-pacer.js';
import { RecordingSlackThread } from './helpers/recording-slack-thread.js';

const recipient = { userId: 'U1', teamId: 'T1' };

function newStream(thread: RecordingSlackThread, options: { onBroken?: () => void; pacer?: StreamPacer } = {}) {
  return new SlackStream(thread, { recipient, pacer: options.pacer ?? new StreamPacer(0), logger: silentLogger, ...(options.onBroken ? { onBroken: options.onBroken } : {}) });
}

/** Makes the thread's appendStream wait until `release()`: what arrives meanwhile must go out in one call. */
function holdAppends(thread: RecordingSlackThread): { release: () => void; waiting: () => Promise<void> } {
  const original = thread.appendStream.bind(thread);
  let release = () => {};
  let arrived = () => {};
  const arrival = new Promise<void>((resolve) => (arrived = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  thread.appendStream = async (ts, chunks) => {
    arrived();
    await gate;
    return original(ts, chunks);
  };
  return { release: () => release(), waiting: () => arrival };
}

describe('SlackStream', () => {
  test('text and task cards arrive in the order they came; the code is sent once, the output on the last update', async () => {
    const thread = new RecordingSlackThread();
    const stream = newStream(thread);
    stream.appendText('Let me look. ');
    stream.updateTask({ id: 'step-1', title: 'Load the file', status: 'in_progress', details: 'import pandas as pd' });
    stream.updateTask({ id: 'step-1', title: 'Load the file', status: 'complete', output: '3 rows' });
    stream.appendText('The total is **6**.');
    expect(await stream.close()).toBe('');
    const [only] = thread.streams.streams;
    expect(only).toMatchObject({ state: 'stopped', markdown: 'Let me look. The total is **6**.', recipient: { user: 'U1', team: 'T1' } });
    expect(only?.tasks.get('step-1')).toMatchObject({ status: 'complete', details: 'import pandas as pd', output: '3 rows' });
    const order = only!.calls.flatMap((call) => call.chunks.map((chunk) => (chunk.type === 'task_update' ? `task:${String(chunk.status)}` : 'text')));
    expect(order.filter((entry, index) => entry !== order[index - 1])).toStrictEqual(['text', 'task:in_progress', 'task:complete', 'text']);
    expect(thread.calls.map((call) => call.method)[0]).toBe('startStream');
    expect(thread.calls.at(-1)?.method).toBe('stopStream');
  });

  test('one call at a time: what arrives while a call is out goes in the next one, together', async () => {
    const thread = new RecordingSlackThread();
    const stream = newStream(thread);
    stream.appendText('first');
    await thread.waitFor((recording) => recording.streams.streams.length === 1);
    const held = holdAppends(thread);
    stream.appendText(' second');
    await held.waiting();
    for (const word of [' third', ' fourth', ' fifth']) stream.appendText(word);
    held.release();
    await stream.close();
    const appends = thread.calls.filter((call) => call.method === 'appendStream' || call.method === 'stopStream');
    expect(appends.length, 'the three words after the held call went out in one call').toBeLessThanOrEqual(3);
    expect(thread.streamedText).toBe('first second third fourth fifth');
  });

  test('closing while a call is out still makes one call at a time, and everything arrives', async () => {
    const thread = new RecordingSlackThread();
    let inFlight = 0;
    let most = 0;
    for (const method of ['startStream', 'appendStream', 'stopStream'] as const) {
      const original = thread[method].bind(thread) as (...args: unknown[]) => Promise<unknown>;
      (thread as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
        most = Math.max(most, ++inFlight);
        try {
          await new Promise((resolve) => setImmediate(resolve));
          return await original(...args);
        } finally {
          inFlight -= 1;
        }
      };
    }
    const stream = newStream(thread);
    stream.appendText('one ');
    await thread.waitFor((recording) => recording.calls.some((call) => call.method === 'startStream'));
    const long = 'x'.repeat(40_000); // several calls' worth, still being sent when close() takes over
    stream.appendText(long);
    expect(await stream.close()).toBe('');
    expect(most).toBe(1);
    expect(thread.streamedText).toBe(`one ${long}`);
  });

  test('a long answer is cut into calls of at most 12,000 characters and arrives whole', async () => {
    const thread = new RecordingSlackThread();
    const stream = newStream(thread);
    const answer = Array.from({ length: 3000 }, (_, index) => `line ${index} 😀\n`).join('');
    stream.appendText(answer);
    expect(await stream.close()).toBe('');
    const sizes = thread.streams.streams[0]!.calls.map((call) => call.chunks.reduce((sum, chunk) => sum + String(chunk.text ?? '').length, 0));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(12_000);
    expect(sizes.length).toBeGreaterThanOrEqual(3);
    expect(thread.streamedText).toBe(answer);
  });

  test('a stream Slack refuses to start is broken at once and hands every word back', async () => {
    const thread = new RecordingSlackThread();
    thread.streams.startError = 'not_allowed_token_type';
    let broken = 0;
    const stream = newStream(thread, { onBroken: () => broken++ });
    stream.appendText('all of ');
    await thread.waitFor((recording) => recording.calls.some((call) => call.method === 'startStream'));
    stream.updateTask({ id: 's', title: 'Step', status: 'in_progress' });
    stream.appendText('this answer');
    expect(await stream.close()).toBe('all of this answer');
    expect(broken).toBe(1);
    expect(stream.broken).toBe(false); // closed now
    expect(thread.streams.streams).toStrictEqual([]);
  });

  test('a stream Slack ended (expiry) continues in a new message, the running card with it; nothing is lost', async () => {
    const thread = new RecordingSlackThread();
    const stream = newStream(thread);
    stream.appendText('Before the long step. ');
    stream.updateTask({ id: 'step-1', title: 'Train the model', status: 'in_progress', details: 'model.fit(x, y)' });
    await thread.waitFor((recording) => recording.streams.streams[0]?.tasks.has('step-1'));
    thread.streams.expire();
    stream.updateTask({ id: 'step-1', title: 'Train the model', status: 'complete', output: 'accuracy 0.9' });
    stream.appendText('After it.');
    expect(await stream.close()).toBe('');
    const [first, second] = thread.streams.streams;
    expect(first?.state).toBe('expired');
    expect(second?.state).toBe('stopped');
    expect(second?.tasks.get('step-1')).toMatchObject({ status: 'complete', output: 'accuracy 0.9' });
    expect(thread.streamedText).toBe('Before the long step. After it.');
  });

  test('a stream that keeps ending is given up after two new messages; the rest is handed back', async () => {
    const thread = new RecordingSlackThread();
    let broken = 0;
    const stream = newStream(thread, { onBroken: () => broken++ });
    for (let round = 0; round < 3; round++) {
      stream.appendText(`part ${round}. `);
      await thread.waitFor((recording) => recording.streams.streams[round]?.markdown.includes(`part ${round}. `));
      thread.streams.expire();
    }
    stream.appendText('the end');
    expect(await stream.close()).toBe('the end');
    expect(broken).toBe(1);
    expect(thread.streams.streams.map((entry) => entry.markdown)).toStrictEqual(['part 0. ', 'part 1. ', 'part 2. ']);
  });

  test('the pacer: at most 18 starts a minute, and a longer interval when many streams are open', () => {
    let now = 1_000_000;
    const pacer = new StreamPacer(2000, () => now);
    for (let index = 0; index < 18; index++) expect(pacer.tryStart()).toBe(true);
    expect(pacer.tryStart()).toBe(false);
    now += 60_001;
    expect(pacer.tryStart()).toBe(true);
    expect(pacer.intervalMs()).toBe(2000);
    for (let index = 0; index < 6; index++) pacer.opened();
    expect(pacer.intervalMs()).toBe(4000);
    expect(new StreamPacer(0).intervalMs()).toBe(0);
  });
});
