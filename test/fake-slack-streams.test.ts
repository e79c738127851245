/**
 * Proves FakeSlack enforces Slack's rules for streamed messages, agent sessions and table blocks with the real
 * @slack/web-api client (test/fakes/fake-slack-streams.ts, fake-slack-blocks.ts), so tests of the bot can trust a
 * stream or a table the fake accepted, and rely on its refusals carrying Slack's error codes.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebAPIPlatformError, WebClient } from '@slack/web-api';
import { FakeSlack } from './fakes/fake-slack.js';

const botToken = 'xoxb-streams';

describe('FakeSlack streams, agent sessions and tables', () => {
  const slack = new FakeSlack({ botToken, botUserId: 'UBOT', teamId: 'T1' });
  let client: WebClient;
  let threads = 0;
  beforeAll(async () => {
    await slack.start();
    client = new WebClient(botToken, { slackApiUrl: slack.apiUrl, retryConfig: { retries: 2, minTimeout: 10, maxTimeout: 20 } });
  });
  afterAll(() => slack.close());

  const newThread = () => {
    const ts = `${1700100000 + ++threads}.000100`;
    slack.seedMessage({ channel: 'C1', ts, user: 'U1', text: '<@UBOT> go' });
    return ts;
  };
  const errorOf = (promise: Promise<unknown>) =>
    promise.then(
      () => 'ok',
      (error: unknown) => (error instanceof WebAPIPlatformError ? error.data.error : String(error)),
    );
  const recipient = { recipient_user_id: 'U1', recipient_team_id: 'T1' };

  test('a stream in a channel needs both recipients; in a DM it does not', async () => {
    const thread = newThread();
    const chunks = [{ type: 'markdown_text' as const, text: 'hi' }];
    expect(await errorOf(client.chat.startStream({ channel: 'C1', thread_ts: thread, chunks }))).toBe('missing_recipient_user_id');
    expect(await errorOf(client.chat.startStream({ channel: 'C1', thread_ts: thread, recipient_user_id: 'U1', chunks }))).toBe('missing_recipient_team_id');
    expect(await errorOf(client.chat.startStream({ channel: 'D1', thread_ts: thread, chunks }))).toBe('ok');
    expect(slack.unexpected.map((entry) => entry.reason)).toStrictEqual(['missing_recipient_user_id', 'missing_recipient_team_id']);
    slack.unexpected.length = 0;
  });

  test('start, task updates, appended text and stop build one message; details append like Slack', async () => {
    const thread = newThread();
    const started = await client.chat.startStream({ channel: 'C1', thread_ts: thread, ...recipient, chunks: [{ type: 'task_update', id: 's1', title: 'Load', status: 'in_progress', details: 'import pandas' }] });
    const ts = started.ts!;
    await client.chat.appendStream({ channel: 'C1', ts, chunks: [{ type: 'task_update', id: 's1', title: 'Load', status: 'complete', output: '3 rows' }, { type: 'markdown_text', text: 'The total ' }] });
    await client.chat.appendStream({ channel: 'C1', ts, chunks: [{ type: 'markdown_text', text: 'is 6.' }] });
    await client.chat.stopStream({ channel: 'C1', ts });
    const stream = slack.streams.find(ts)!;
    expect(stream).toMatchObject({ state: 'stopped', markdown: 'The total is 6.', recipient: { user: 'U1', team: 'T1' }, sessionStatus: 'active' });
    expect(stream.tasks.get('s1')).toMatchObject({ status: 'complete', details: 'import pandas', output: '3 rows', updates: 2 });
    expect(slack.botMessagesIn('C1', thread).map((message) => message.text)).toStrictEqual(['The total is 6.']);
    expect(await errorOf(client.chat.update({ channel: 'C1', ts, text: 'edited after the stop' }))).toBe('ok');
    expect(slack.unexpected).toStrictEqual([]);
  });

  test('the mode is kept, 12,000 characters per call, and a closed, expired or user-stopped stream takes nothing', async () => {
    const thread = newThread();
    const ts = (await client.chat.startStream({ channel: 'C1', thread_ts: thread, ...recipient, chunks: [{ type: 'markdown_text', text: 'a' }] })).ts!;
    expect(await errorOf(client.chat.appendStream({ channel: 'C1', ts, markdown_text: 'b' }))).toBe('streaming_mode_mismatch');
    expect(await errorOf(client.chat.appendStream({ channel: 'C1', ts, chunks: [{ type: 'markdown_text', text: 'x'.repeat(12_001) }] }))).toBe('msg_too_long');
    expect(await errorOf(client.chat.appendStream({ channel: 'C1', ts, chunks: [{ type: 'task_update', id: 't', title: 'T', status: 'completed' as 'complete' }] }))).toBe('invalid_chunks');
    expect(await errorOf(client.chat.appendStream({ channel: 'C1', ts, chunks: [{ type: 'task_update', id: 't', title: 'T', status: 'complete', details: 'd'.repeat(257) }] }))).toBe('invalid_chunks');
    expect(await errorOf(client.chat.update({ channel: 'C1', ts, text: 'edit while streaming' }))).toBe('streaming_state_conflict');
    await client.chat.stopStream({ channel: 'C1', ts });
    expect(await errorOf(client.chat.appendStream({ channel: 'C1', ts, chunks: [{ type: 'markdown_text', text: 'late' }] }))).toBe('message_not_in_streaming_state');
    expect(await errorOf(client.chat.stopStream({ channel: 'C1', ts }))).toBe('message_not_in_streaming_state');

    const expiring = (await client.chat.startStream({ channel: 'C1', thread_ts: thread, ...recipient, chunks: [{ type: 'markdown_text', text: 'a' }] })).ts!;
    slack.streams.expire(expiring);
    expect(await errorOf(client.chat.appendStream({ channel: 'C1', ts: expiring, chunks: [{ type: 'markdown_text', text: 'b' }] }))).toBe('message_not_in_streaming_state');
    const stopped = (await client.chat.startStream({ channel: 'C1', thread_ts: thread, ...recipient, chunks: [{ type: 'markdown_text', text: 'a' }] })).ts!;
    expect(slack.streams.stopByUser('C1', thread)).toStrictEqual([stopped]);
    expect(await errorOf(client.chat.appendStream({ channel: 'C1', ts: stopped, chunks: [{ type: 'markdown_text', text: 'b' }] }))).toBe('stopped_by_user');
    expect(slack.unexpected.map((entry) => entry.reason)).toStrictEqual(['streaming_mode_mismatch', 'msg_too_long', 'invalid_chunks', 'invalid_chunks']);
    slack.unexpected.length = 0;
  });

  test('rate limits on demand: the client waits for Retry-After and the append goes through once', async () => {
    const thread = newThread();
    const ts = (await client.chat.startStream({ channel: 'C1', thread_ts: thread, ...recipient, chunks: [{ type: 'markdown_text', text: 'a' }] })).ts!;
    slack.rateLimit('chat.appendStream', { every: 1, retryAfterSec: 0 });
    const pending = client.chat.appendStream({ channel: 'C1', ts, chunks: [{ type: 'markdown_text', text: 'b' }] });
    await slack.waitFor((fake) => fake.rateLimited.some((call) => call.method === 'chat.appendStream'));
    slack.clearRateLimits();
    await pending;
    expect(slack.streams.find(ts)?.markdown).toBe('ab');
  });

  test('agents.sessions.setStatus: known statuses, a warning without the agent_session_stopped subscription', async () => {
    const thread = newThread();
    expect((await client.agents.sessions.setStatus({ channel_id: 'C1', thread_ts: thread, status: 'processing' })).warning).toBeUndefined();
    slack.streams.subscribedToStop = false;
    const warned = await client.agents.sessions.setStatus({ channel_id: 'C1', thread_ts: thread, status: 'active' });
    slack.streams.subscribedToStop = true;
    expect(warned.warning).toBe('missing_agent_session_stopped_event_subscription');
    expect(await errorOf(client.agents.sessions.setStatus({ channel_id: 'C1', thread_ts: thread, status: 'busy' }))).toBe('invalid_status');
    slack.streams.sessionStatusResult = 'feature_disabled';
    expect(await errorOf(client.agents.sessions.setStatus({ channel_id: 'C1', thread_ts: thread, status: 'active' }))).toBe('feature_disabled');
    slack.streams.sessionStatusResult = 'ok';
    expect(slack.streams.statusesOf('C1', thread)).toStrictEqual(['processing', 'active']);
    slack.unexpected.length = 0;
  });

  test('a table block within 100 rows, 20 cells and 10,000 characters is accepted; past any limit refused', async () => {
    const thread = newThread();
    const cell = (text: string) => ({ type: 'raw_text', text });
    const table = (rows: number, cells: number, text = 'x') => ({ type: 'table', rows: Array.from({ length: rows }, () => Array.from({ length: cells }, () => cell(text))) });
    const post = (blocks: unknown[]) => errorOf(client.chat.postMessage({ channel: 'C1', thread_ts: thread, text: 'a table', blocks: blocks as never }));
    expect(await post([table(100, 20, 'xxxxx')])).toBe('ok');
    expect(await post([table(101, 1)])).toBe('invalid_blocks');
    expect(await post([table(1, 21)])).toBe('invalid_blocks');
    expect(await post([table(100, 20, 'xxxxxx')])).toBe('invalid_blocks');
    expect(await post([table(2, 2, '')])).toBe('invalid_blocks');
    expect(await post([table(1, 1), table(1, 1)])).toBe('invalid_blocks');
    expect(slack.unexpected.map((entry) => entry.reason)).toStrictEqual(Array(5).fill('invalid_blocks'));
    slack.unexpected.length = 0;
  });
});
