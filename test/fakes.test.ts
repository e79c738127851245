/**
 * Proves the test fakes speak the real wire formats: the real @slack/web-api, @slack/bolt and openai clients are
 * pointed at them, so the end-to-end tests can trust what the fakes record.
 */

import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { assert, afterAll, beforeAll, describe, expect, test } from 'vitest';
import { App, LogLevel } from '@slack/bolt';
import { LogLevel as WebLogLevel, WebClient, WebClientEvent } from '@slack/web-api';
import OpenAI from 'openai';
import { FakeOpenAI, executeCall, lastUserText, toolResults } from './fakes/fake-openai.js';
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
    expect(second.ts > first.ts && first.ts > '1700000001.000001', 'ts values increase and follow seeded ones').toBeTruthy();
    expect(slack.callsTo('chat.postMessage')[0]?.args.blocks).toStrictEqual([{ type: 'section', text: { type: 'mrkdwn', text: '*working*' } }]);
    await client.chat.update({ channel: 'C1', ts: first.ts, text: 'done in 2 steps' });
    const thread = slack.messagesIn('C1', '1700000001.000001');
    expect(thread.map((message) => message.text)).toStrictEqual([mentionText('UBOT', 'hi'), 'done in 2 steps', 'answer']);
    expect(thread[1]?.edited).toBeTruthy();
    await client.chat.delete({ channel: 'C1', ts: second.ts });
    expect(slack.botMessagesIn('C1', '1700000001.000001').map((message) => message.text)).toStrictEqual(['done in 2 steps']);
    await expect(client.chat.update({ channel: 'C1', ts: second.ts, text: 'x' })).rejects.toThrow(/message_not_found/);
    const replies = await client.conversations.replies({ channel: 'C1', ts: '1700000001.000001' });
    expect(replies.messages?.length).toBe(2);
    await client.reactions.add({ channel: 'C1', timestamp: '1700000001.000001', name: 'eyes' });
    await expect(client.reactions.add({ channel: 'C1', timestamp: '1700000001.000001', name: 'eyes' })).rejects.toThrow(/already_reacted/);
    await client.reactions.remove({ channel: 'C1', timestamp: '1700000001.000001', name: 'eyes' });
    expect(slack.unexpected).toStrictEqual([]);
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
    expect(slack.uploads.length).toBe(3);
    const [chart, csv, text] = slack.uploads;
    expect(chart?.filename).toBe('chart.png');
    expect(chart?.title).toBe('out/chart.png');
    expect(chart?.channelId).toBe('C2');
    expect(chart?.threadTs).toBe('1700000002.000001');
    expect(chart?.initialComment).toBe('Here it is');
    expect(chart?.bytes.equals(bytes)).toBeTruthy();
    expect(chart?.declaredLength).toBe(bytes.length);
    expect(csv?.bytes.toString()).toBe('a,b\n1,2\n');
    expect(text?.bytes.toString()).toBe('hello');
    const shares = slack.botMessagesIn('C2', '1700000002.000001').flatMap((message) => message.files ?? []);
    expect(shares.map((file) => file.name).sort()).toStrictEqual(['a.csv', 'b.txt', 'chart.png']);
    expect(slack.callsTo('files.completeUploadExternal').length).toBe(2);
  });

  test('url_private_download serves bytes only with the bot token, the HTML login page otherwise', async () => {
    const content = Buffer.from('region,sales\nnorth,10\n');
    const file = slack.addFile({ name: 'sales.csv', content, mimetype: 'text/csv' });
    const withToken = await fetch(file.url_private_download, { headers: { Authorization: `Bearer ${botToken}` } });
    expect(withToken.status).toBe(200);
    expect(Buffer.from(await withToken.arrayBuffer()).equals(content)).toBeTruthy();
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

  test('rate limiting answers 429 and the real client retries', async () => {
    slack.rateLimit('chat.postMessage', { every: 2 });
    const limited = new WebClient(botToken, { slackApiUrl: slack.apiUrl, logLevel: WebLogLevel.ERROR });
    let rateLimitedEvents = 0;
    limited.on(WebClientEvent.RATE_LIMITED, () => rateLimitedEvents++);
    const before = slack.callsTo('chat.postMessage').length;
    await limited.chat.postMessage({ channel: 'C3', text: 'one' });
    await limited.chat.postMessage({ channel: 'C3', text: 'two' });
    expect(rateLimitedEvents).toBe(1);
    expect(slack.rateLimited.length).toBe(1);
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
    const event = mentionEvent({ channel: 'C9', user: 'U1', text: mentionText('UBOT', 'hello'), thread_ts: '1700000009.000001', files: [file] });
    slack.seedFromEvent(event);
    const result = await postEvent(eventsUrl, signingSecret, event);
    expect(result.status).toBe(200);
    await slack.waitFor((fake) => fake.messagesIn('C9', '1700000009.000001').length > 0);
    expect(mentions.map((mention) => mention.text)).toStrictEqual(['<@UBOT> hello']);
    expect((mentions[0]?.files as Array<{ id: string }>)[0]?.id).toBe(file.id);
    const replies = await new WebClient(botToken, { slackApiUrl: slack.apiUrl }).conversations.replies({ channel: 'C9', ts: String(event.ts) });
    expect(replies.messages?.[0]?.files?.[0]?.id).toBe(file.id);
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
    expect(!mentions.some((mention) => /evil|nice/.test(mention.text))).toBeTruthy();
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

describe('FakeOpenAI with the real openai client', () => {
  const ai = new FakeOpenAI({ apiKey: 'sk-test' });
  let client: OpenAI;
  const tools: OpenAI.Chat.ChatCompletionTool[] = [
    { type: 'function', function: { name: 'execute', parameters: { type: 'object', properties: { language: { type: 'string' }, code: { type: 'string' } } } } },
  ];
  beforeAll(async () => {
    await ai.start();
    client = new OpenAI({ apiKey: 'sk-test', baseURL: ai.baseUrl, maxRetries: 2 });
  });
  afterAll(() => ai.close());

  test('non-streaming: a tool call, then an answer that depends on the tool result', async () => {
    ai.script((request) => {
      const results = toolResults(request, { sinceLastUser: true });
      if (results.length === 0) return executeCall('print(sum(range(101)))', 'call_a');
      return { content: `The sum is ${results[0]!.content.trim()} (${lastUserText(request)})`, usage: { prompt_tokens: 11, completion_tokens: 5 } };
    });
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'sum 1..100' }];
    const first = await client.chat.completions.create({ model: 'gpt-test', messages, tools });
    const call = first.choices[0]?.message.tool_calls?.[0];
    expect(first.choices[0]?.finish_reason).toBe('tool_calls');
    assert(call?.type === 'function', 'a function tool call');
    expect(call.id).toBe('call_a');
    expect(JSON.parse(call.function.arguments)).toStrictEqual({ language: 'python', code: 'print(sum(range(101)))' });
    messages.push(first.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: '5050\n' });
    const second = await client.chat.completions.create({ model: 'gpt-test', messages, tools });
    expect(second.choices[0]?.message.content).toBe('The sum is 5050 (sum 1..100)');
    expect(second.usage).toStrictEqual({ prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 });
    expect(ai.requests.length).toBe(2);
    expect(ai.requests[1]?.headers.authorization).toBe('Bearer sk-test');
    expect(ai.requests[1]?.body.messages.length).toBe(3);
    ai.script(undefined);
  });

  test('streaming: content deltas, tool call deltas and the usage chunk', async () => {
    ai.enqueue({ content: 'Hello, streaming world!', usage: { prompt_tokens: 3, completion_tokens: 4 } }, executeCall('x = 1\nprint(x)'));
    const stream = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe('Hello, streaming world!');
    expect(chunks > 3, 'content arrives in several deltas').toBeTruthy();
    expect(usage).toStrictEqual({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
    const runner = client.chat.completions.stream({ model: 'gpt-test', messages: [{ role: 'user', content: 'run' }], tools });
    const final = await runner.finalChatCompletion();
    const call = final.choices[0]?.message.tool_calls?.[0];
    assert(call?.type === 'function', 'a function tool call');
    expect(call.function.name).toBe('execute');
    expect(JSON.parse(call.function.arguments)).toStrictEqual({ language: 'python', code: 'x = 1\nprint(x)' });
    expect(final.choices[0]?.finish_reason).toBe('tool_calls');
    ai.assertExhausted();
  });

  test('errors are retried by the client; unscripted requests answer 500 and are recorded', async () => {
    ai.enqueue({ error: { status: 429, message: 'slow down' } }, { content: 'after retry' });
    const retried = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] });
    expect(retried.choices[0]?.message.content).toBe('after retry');
    ai.enqueue({ error: { status: 400, message: 'bad request' } });
    await expect(client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] })).rejects.toSatisfy((error: unknown) => error instanceof OpenAI.BadRequestError);
    const before = ai.requests.length;
    const noRetry = new OpenAI({ apiKey: 'sk-test', baseURL: ai.baseUrl, maxRetries: 0 });
    await expect(noRetry.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] })).rejects.toSatisfy((error: unknown) => error instanceof OpenAI.InternalServerError);
    expect(ai.requests.length).toBe(before + 1);
    expect(ai.unexpected.length).toBe(1);
    const wrongKey = new OpenAI({ apiKey: 'sk-wrong', baseURL: ai.baseUrl, maxRetries: 0 });
    await expect(wrongKey.chat.completions.create({ model: 'gpt-test', messages: [] })).rejects.toSatisfy((error: unknown) => error instanceof OpenAI.AuthenticationError);
    expect(() => ai.assertExhausted()).toThrow(/not exhausted/);
  });

  test('a delayed reply is marked aborted when the client gives up', async () => {
    ai.enqueue({ content: 'too late', delayMs: 5000 });
    const controller = new AbortController();
    const pending = client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'slow' }] }, { signal: controller.signal });
    const request = await ai.waitFor((fake) => fake.requests.find((entry) => lastUserText(entry.body) === 'slow'));
    controller.abort();
    await expect(pending).rejects.toSatisfy((error: unknown) => error instanceof OpenAI.APIUserAbortError);
    await ai.waitFor(() => request.aborted);
  });
});
