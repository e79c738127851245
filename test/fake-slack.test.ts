/**
 * Proves FakeSlack speaks the real wire formats: the real @slack/web-api and @slack/bolt are pointed at it, so the
 * end-to-end tests can trust what it records. (The other fakes are proven in fakes.test.ts.)
 */

import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { assert, afterAll, beforeAll, describe, expect, test } from 'vitest';
import { App, LogLevel } from '@slack/bolt';
import { LogLevel as WebLogLevel, WebClient, WebClientEvent } from '@slack/web-api';
import { FakeSlack, generatedContent, LOGIN_PAGE_HTML } from './fakes/fake-slack.js';
import { mentionEvent, mentionText, postBlockAction, postEvent, postUrlVerification, signedRequest } from './helpers/slack-events.js';

const botToken = 'xoxb-test';

describe('FakeSlack with the real WebClient', () => {
  const slack = new FakeSlack({ botToken, botUserId: 'UBOT', teamId: 'T1' });
  let client: WebClient;
  beforeAll(async () => {
    await slack.start();
    client = new WebClient(botToken, { slackApiUrl: slack.apiUrl, retryConfig: { retries: 2, minTimeout: 10, maxTimeout: 20 } });
  });
  afterAll(() => slack.close());

  test('auth.test, postMessage, update, delete and the reconstructed thread', async () => {
    const auth = await client.auth.test();
    expect(auth.user_id).toBe('UBOT');
    expect(auth.team_id).toBe('T1');
    slack.seedMessage({ channel: 'C1', ts: '1700000001.000001', user: 'U1', text: mentionText('UBOT', 'hi') });
    const first = await client.chat.postMessage({ channel: 'C1', thread_ts: '1700000001.000001', text: 'working…', blocks: [{ type: 'section', text: { type: 'mrkdwn', text: '*working*' } }] });
    const second = await client.chat.postMessage({ channel: 'C1', thread_ts: '1700000001.000001', text: 'answer' });
    const elsewhere = await client.chat.postMessage({ channel: 'C1', text: 'top level' });
    assert(first.ts && second.ts && elsewhere.ts, 'every post has a ts');
    expect(second.ts > first.ts, `${second.ts} comes after ${first.ts}`).toBe(true);
    expect(first.ts > '1700000001.000001', `${first.ts} follows the seeded 1700000001.000001`).toBe(true);
    expect(slack.callsTo('chat.postMessage')[0]?.args.blocks).toStrictEqual([{ type: 'section', text: { type: 'mrkdwn', text: '*working*' } }]);
    await client.chat.update({ channel: 'C1', ts: first.ts, text: 'done in 2 steps' });
    const thread = slack.messagesIn('C1', '1700000001.000001');
    expect(thread.map((message) => message.text)).toStrictEqual([mentionText('UBOT', 'hi'), 'done in 2 steps', 'answer']);
    expect(thread[1]?.edited).toMatchObject({ user: 'UBOT', ts: expect.any(String) });
    await client.chat.delete({ channel: 'C1', ts: second.ts });
    expect(slack.botMessagesIn('C1', '1700000001.000001').map((message) => message.text)).toStrictEqual(['done in 2 steps']);
    await expect(client.chat.update({ channel: 'C1', ts: second.ts, text: 'x' })).rejects.toThrow(/message_not_found/);
    const replies = await client.conversations.replies({ channel: 'C1', ts: '1700000001.000001' });
    expect(replies.messages).toHaveLength(2);
    await client.reactions.add({ channel: 'C1', timestamp: '1700000001.000001', name: 'eyes' });
    await expect(client.reactions.add({ channel: 'C1', timestamp: '1700000001.000001', name: 'eyes' })).rejects.toThrow(/already_reacted/);
    await client.reactions.remove({ channel: 'C1', timestamp: '1700000001.000001', name: 'eyes' });
    expect(slack.unexpected).toStrictEqual([]);
  });

  test('conversations.replies honours oldest, latest, inclusive, limit and cursor as Slack documents them', async () => {
    const parent = '1700000050.000000';
    slack.seedMessage({ channel: 'C5', ts: parent, user: 'U1', text: 'parent' });
    const replyTs = Array.from({ length: 6 }, (_, index) => `1700000050.00000${index + 1}`);
    for (const ts of replyTs) slack.seedMessage({ channel: 'C5', ts, thread_ts: parent, user: 'U1', text: `reply ${ts.slice(-1)}` });
    const texts = (answer: { messages?: Array<{ text?: string }> }) => answer.messages?.map((message) => message.text);
    const replies = (window: Record<string, unknown>) => client.conversations.replies({ channel: 'C5', ts: parent, ...window });

    // The parent always comes first; then the replies strictly inside the window, or on its edges with inclusive.
    expect(texts(await replies({ oldest: replyTs[1], latest: replyTs[3] }))).toStrictEqual(['parent', 'reply 3']);
    expect(texts(await replies({ oldest: replyTs[1], latest: replyTs[3], inclusive: true }))).toStrictEqual(['parent', 'reply 2', 'reply 3', 'reply 4']);
    expect(texts(await replies({ oldest: replyTs[4], latest: replyTs[4] }))).toStrictEqual(['parent']);
    expect(texts(await replies({ oldest: replyTs[4], latest: replyTs[4], inclusive: true }))).toStrictEqual(['parent', 'reply 5']);
    // A reply's ts names its thread too.
    expect(texts(await client.conversations.replies({ channel: 'C5', ts: replyTs[5]!, oldest: replyTs[4] }))).toStrictEqual(['parent', 'reply 6']);

    // limit cuts a page; next_cursor continues it without repeating the parent, until has_more is false.
    const first = await replies({ limit: 3 });
    expect(texts(first)).toStrictEqual(['parent', 'reply 1', 'reply 2']);
    expect(first.has_more).toBe(true);
    const cursor = first.response_metadata?.next_cursor;
    assert(typeof cursor === 'string' && cursor !== '', 'a next_cursor');
    const second = await replies({ limit: 3, cursor });
    expect(texts(second)).toStrictEqual(['reply 3', 'reply 4', 'reply 5']);
    const pages: string[][] = [];
    for await (const page of client.paginate('conversations.replies', { channel: 'C5', ts: parent, limit: 4 })) {
      pages.push(((page as { messages?: Array<{ text: string }> }).messages ?? []).map((message) => message.text));
    }
    expect(pages).toStrictEqual([['parent', 'reply 1', 'reply 2', 'reply 3'], ['reply 4', 'reply 5', 'reply 6']]);

    await expect(replies({ cursor: 'bm90IGEgY3Vyc29y' })).rejects.toThrow(/invalid_cursor/);
    await expect(replies({ oldest: 'yesterday' })).rejects.toThrow(/invalid_ts_oldest/);
    await expect(client.conversations.replies({ channel: 'C5', ts: '1700000099.000000' })).rejects.toThrow(/thread_not_found/);
  });

  test('wrong token, unknown and retired methods fail loudly', async () => {
    const before = slack.unexpected.length;
    const stranger = new WebClient('xoxb-wrong', { slackApiUrl: slack.apiUrl });
    await expect(stranger.chat.postMessage({ channel: 'C1', text: 'x' })).rejects.toThrow(/invalid_auth/);
    await expect(client.apiCall('chat.nonsense', {})).rejects.toThrow(/unknown_method/);
    expect(slack.unexpected.slice(before).map((entry) => entry.method)).toStrictEqual(['chat.postMessage', 'chat.nonsense']);
  });

  test('messages Slack would refuse are refused and recorded', async () => {
    const before = slack.unexpected.length;
    await expect(client.chat.postMessage({ channel: 'C1', text: 'x'.repeat(40_001) })).rejects.toThrow(/msg_too_long/);
    const longSection = [{ type: 'section', text: { type: 'mrkdwn', text: 'y'.repeat(3001) } }];
    await expect(client.chat.postMessage({ channel: 'C1', text: 'fallback', blocks: longSection })).rejects.toThrow(/invalid_blocks/);
    expect(slack.unexpected.slice(before).map((entry) => entry.reason)).toStrictEqual(['msg_too_long', 'invalid_blocks']);
  });

  test('assistant.threads.setStatus succeeds or fails as configured', async () => {
    await client.assistant.threads.setStatus({ channel_id: 'C1', thread_ts: '1700000001.000001', status: 'thinking' });
    slack.setStatusResult = 'not_allowed_token_type';
    await expect(client.assistant.threads.setStatus({ channel_id: 'C1', thread_ts: '1700000001.000001', status: 'x' })).rejects.toThrow(/not_allowed_token_type/);
    slack.setStatusResult = 'ok';
  });

  test('files.uploadV2 bytes arrive intact in the right thread', async () => {
    const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, index) => (index * 7) % 256));
    await client.filesUploadV2({ channel_id: 'C2', thread_ts: '1700000002.000001', file: bytes, filename: 'chart.png', title: 'out/chart.png', initial_comment: 'Here it is' });
    await client.filesUploadV2({
      channel_id: 'C2',
      thread_ts: '1700000002.000001',
      file_uploads: [
        { file: Buffer.from('a,b\n1,2\n'), filename: 'a.csv' },
        { file: Buffer.from('hello'), filename: 'b.txt' },
      ],
    });
    expect(slack.uploads).toHaveLength(3);
    const [chart, csv, text] = slack.uploads;
    expect(chart).toMatchObject({ filename: 'chart.png', title: 'out/chart.png', channelId: 'C2', threadTs: '1700000002.000001', initialComment: 'Here it is' });
    expect(chart?.bytes).toStrictEqual(bytes);
    expect(chart?.declaredLength).toBe(bytes.length);
    expect(csv?.bytes.toString()).toBe('a,b\n1,2\n');
    expect(text?.bytes.toString()).toBe('hello');
    const shares = slack.botMessagesIn('C2', '1700000002.000001').flatMap((message) => message.files ?? []);
    expect(shares.map((file) => file.name).sort()).toStrictEqual(['a.csv', 'b.txt', 'chart.png']);
    expect(slack.callsTo('files.completeUploadExternal')).toHaveLength(2);
  });

  test('url_private_download serves bytes only with the bot token, the HTML login page otherwise', async () => {
    const content = Buffer.from('region,sales\nnorth,10\n');
    const file = slack.addFile({ name: 'sales.csv', content, mimetype: 'text/csv' });
    const withToken = await fetch(file.url_private_download, { headers: { Authorization: `Bearer ${botToken}` } });
    expect(withToken.status).toBe(200);
    expect(Buffer.from(await withToken.arrayBuffer())).toStrictEqual(content);
    for (const headers of [{}, { Authorization: 'Bearer xoxb-wrong' }] as Array<Record<string, string>>) {
      const anonymous = await fetch(file.url_private_download, { headers });
      expect(anonymous.status).toBe(200);
      expect(anonymous.headers.get('content-type') ?? '').toMatch(/^text\/html/);
      expect(await anonymous.text()).toBe(LOGIN_PAGE_HTML);
    }
    slack.setFileMode(file.id, 'login-page');
    const noScope = await fetch(file.url_private_download, { headers: { Authorization: `Bearer ${botToken}` } });
    expect(await noScope.text()).toMatch(/^<!DOCTYPE html>/);
    slack.setFileMode(file.id, 'deleted');
    const deleted = await fetch(file.url_private_download, { headers: { Authorization: `Bearer ${botToken}` } });
    expect(deleted.status).toBe(404);
    await deleted.body?.cancel();
    await expect(client.files.info({ file: file.id })).rejects.toThrow(/file_not_found/);
  });

  test('a huge generated file streams with the right length and bytes', async () => {
    const size = 20 * 1024 * 1024 + 3;
    const file = slack.addFile({ name: 'big.csv', content: generatedContent(size, 'x,y\n'), size });
    expect((await client.files.info({ file: file.id })).file?.size).toBe(size);
    const response = await fetch(file.url_private_download, { headers: { Authorization: `Bearer ${botToken}` } });
    expect(response.headers.get('content-length')).toBe(String(size));
    let total = 0;
    const hash = createHash('sha256');
    for await (const chunk of response.body!) {
      total += chunk.length;
      hash.update(chunk);
    }
    expect(total).toBe(size);
    const expected = createHash('sha256').update(Buffer.from('x,y\n'.repeat(Math.ceil(size / 4)).slice(0, size))).digest('hex');
    expect(hash.digest('hex')).toBe(expected);
  });

  test('rate limiting answers 429 with Retry-After and the real client waits and retries', async () => {
    slack.rateLimit('chat.postMessage', { every: 2 });
    const limited = new WebClient(botToken, { slackApiUrl: slack.apiUrl, logLevel: WebLogLevel.ERROR });
    const rateLimitedEvents: number[] = [];
    limited.on(WebClientEvent.RATE_LIMITED, (retrySec: number) => rateLimitedEvents.push(retrySec));
    const before = slack.callsTo('chat.postMessage').length;
    await limited.chat.postMessage({ channel: 'C3', text: 'one' });
    await limited.chat.postMessage({ channel: 'C3', text: 'two' });
    expect(rateLimitedEvents, 'the client read Retry-After: 1').toStrictEqual([1]);
    expect(slack.rateLimited).toHaveLength(1);
    expect(slack.callsTo('chat.postMessage').length - before).toBe(2);
    slack.clearRateLimits();
  });

  test('waitFor resolves on a later call and rejects with a dump on timeout', async () => {
    const waiting = slack.waitFor((fake) => fake.callsTo('chat.postMessage').find((call) => call.args.text === 'later'));
    await client.chat.postMessage({ channel: 'C4', text: 'later' });
    expect((await waiting).args.channel).toBe('C4');
    await expect(slack.waitFor(() => false, 50)).rejects.toThrow(/waitFor timed out after 50 ms[\s\S]*chat.postMessage/);
  });
});

describe('signed events against a real Bolt app', () => {
  const signingSecret = 'test-signing-secret';
  const slack = new FakeSlack({ botToken, botUserId: 'UBOT', teamId: 'T1' });
  const mentions: Array<{ text: string; channel: string; thread_ts?: string; files?: unknown[] }> = [];
  const clicks: string[] = [];
  let app: App;
  let eventsUrl: string;
  beforeAll(async () => {
    await slack.start();
    app = new App({ signingSecret, token: botToken, logLevel: LogLevel.ERROR, clientOptions: { slackApiUrl: slack.apiUrl } });
    app.event('app_mention', async ({ event, client }) => {
      mentions.push({ text: event.text, channel: event.channel, thread_ts: event.thread_ts, files: (event as { files?: unknown[] }).files });
      await client.chat.postMessage({ channel: event.channel, thread_ts: event.thread_ts ?? event.ts, text: 'ack' });
    });
    app.action('stop', async ({ ack, body }) => {
      await ack();
      clicks.push(body.user.id);
    });
    const server = (await app.start(0)) as Server;
    const port = (server.address() as AddressInfo).port;
    eventsUrl = `http://127.0.0.1:${port}/slack/events`;
  });
  afterAll(async () => {
    await app.stop();
    await slack.close();
  });

  test('an app_mention signed with the right secret reaches the listener', async () => {
    const file = slack.addFile({ name: 'a.csv', content: 'a\n1\n' });
    slack.seedMessage({ channel: 'C9', ts: '1700000009.000001', user: 'U1', text: 'the thread' });
    const event = mentionEvent({ channel: 'C9', user: 'U1', text: mentionText('UBOT', 'hello'), thread_ts: '1700000009.000001', files: [file] });
    slack.seedFromEvent(event);
    const result = await postEvent(eventsUrl, signingSecret, event);
    expect(result.status).toBe(200);
    await slack.waitFor((fake) => fake.botMessagesIn('C9', '1700000009.000001').length > 0);
    expect(mentions.map((mention) => mention.text)).toStrictEqual(['<@UBOT> hello']);
    expect((mentions[0]?.files as Array<{ id: string }>)[0]?.id).toBe(file.id);
    const window = { oldest: String(event.ts), latest: String(event.ts), inclusive: true };
    const replies = await new WebClient(botToken, { slackApiUrl: slack.apiUrl }).conversations.replies({ channel: 'C9', ts: String(event.ts), ...window });
    expect(replies.messages?.map((message) => message.ts)).toStrictEqual(['1700000009.000001', event.ts]);
    expect(replies.messages?.[1]?.files?.[0]?.id).toBe(file.id);
    expect(slack.unexpected).toStrictEqual([]);
  });

  test('a bad signature or a stale timestamp is rejected with 401', async () => {
    const event = mentionEvent({ channel: 'C9', user: 'U1', text: mentionText('UBOT', 'evil') });
    expect((await postEvent(eventsUrl, 'wrong-secret', event)).status).toBe(401);
    const stale = Math.floor(Date.now() / 1000) - 10 * 60;
    expect((await postEvent(eventsUrl, signingSecret, event, { timestamp: stale })).status).toBe(401);
    const tampered = signedRequest(signingSecret, JSON.stringify({ type: 'event_callback', event }));
    const response = await fetch(eventsUrl, { method: 'POST', headers: tampered.headers, body: tampered.body.replace('evil', 'nice') });
    expect(response.status).toBe(401);
    expect(mentions.filter((mention) => /evil|nice/.test(mention.text))).toStrictEqual([]);
  });

  test('url_verification and a signed block_actions click', async () => {
    const verification = await postUrlVerification(eventsUrl, signingSecret, 'challenge-123');
    expect(verification.status).toBe(200);
    expect(verification.body).toMatch(/challenge-123/);
    const click = await postBlockAction(eventsUrl, signingSecret, { actionId: 'stop', user: 'U7', channel: 'C9', messageTs: '1700000009.000002', responseUrl: slack.newResponseUrl() });
    expect(click.status).toBe(200);
    expect(clicks).toStrictEqual(['U7']);
  });
});
