/**
 * Proves the test fakes speak the real wire formats: the real @slack/web-api, @slack/bolt and openai clients are
 * pointed at them, so the end-to-end tests can trust what the fakes record.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
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
  before(async () => {
    await slack.start();
    client = new WebClient(botToken, { slackApiUrl: slack.apiUrl, retryConfig: { retries: 2, minTimeout: 10, maxTimeout: 20 } });
  });
  after(() => slack.close());

  test('auth.test, postMessage, update, delete and the reconstructed thread', async () => {
    const auth = await client.auth.test();
    assert.equal(auth.user_id, 'UBOT');
    assert.equal(auth.team_id, 'T1');
    slack.seedMessage({ channel: 'C1', ts: '1700000001.000001', user: 'U1', text: mentionText('UBOT', 'hi') });
    const first = await client.chat.postMessage({ channel: 'C1', thread_ts: '1700000001.000001', text: 'working…', blocks: [{ type: 'section', text: { type: 'mrkdwn', text: '*working*' } }] });
    const second = await client.chat.postMessage({ channel: 'C1', thread_ts: '1700000001.000001', text: 'answer' });
    const elsewhere = await client.chat.postMessage({ channel: 'C1', text: 'top level' });
    assert.ok(first.ts && second.ts && elsewhere.ts);
    assert.ok(second.ts > first.ts && first.ts > '1700000001.000001', 'ts values increase and follow seeded ones');
    assert.deepEqual(slack.callsTo('chat.postMessage')[0]?.args.blocks, [{ type: 'section', text: { type: 'mrkdwn', text: '*working*' } }]);
    await client.chat.update({ channel: 'C1', ts: first.ts, text: 'done in 2 steps' });
    const thread = slack.messagesIn('C1', '1700000001.000001');
    assert.deepEqual(thread.map((message) => message.text), [mentionText('UBOT', 'hi'), 'done in 2 steps', 'answer']);
    assert.ok(thread[1]?.edited);
    await client.chat.delete({ channel: 'C1', ts: second.ts });
    assert.deepEqual(slack.botMessagesIn('C1', '1700000001.000001').map((message) => message.text), ['done in 2 steps']);
    await assert.rejects(client.chat.update({ channel: 'C1', ts: second.ts, text: 'x' }), /message_not_found/);
    const replies = await client.conversations.replies({ channel: 'C1', ts: '1700000001.000001' });
    assert.equal(replies.messages?.length, 2);
    await client.reactions.add({ channel: 'C1', timestamp: '1700000001.000001', name: 'eyes' });
    await assert.rejects(client.reactions.add({ channel: 'C1', timestamp: '1700000001.000001', name: 'eyes' }), /already_reacted/);
    await client.reactions.remove({ channel: 'C1', timestamp: '1700000001.000001', name: 'eyes' });
    assert.deepEqual(slack.unexpected, []);
  });

  test('wrong token, unknown and retired methods fail loudly', async () => {
    const before = slack.unexpected.length;
    const stranger = new WebClient('xoxb-wrong', { slackApiUrl: slack.apiUrl });
    await assert.rejects(stranger.chat.postMessage({ channel: 'C1', text: 'x' }), /invalid_auth/);
    await assert.rejects(client.apiCall('chat.nonsense', {}), /unknown_method/);
    assert.deepEqual(slack.unexpected.slice(before).map((entry) => entry.method), ['chat.postMessage', 'chat.nonsense']);
  });

  test('messages Slack would refuse are refused and recorded', async () => {
    const before = slack.unexpected.length;
    await assert.rejects(client.chat.postMessage({ channel: 'C1', text: 'x'.repeat(40_001) }), /msg_too_long/);
    const longSection = [{ type: 'section', text: { type: 'mrkdwn', text: 'y'.repeat(3001) } }];
    await assert.rejects(client.chat.postMessage({ channel: 'C1', text: 'fallback', blocks: longSection }), /invalid_blocks/);
    assert.deepEqual(slack.unexpected.slice(before).map((entry) => entry.reason), ['msg_too_long', 'invalid_blocks']);
  });

  test('assistant.threads.setStatus succeeds or fails as configured', async () => {
    await client.assistant.threads.setStatus({ channel_id: 'C1', thread_ts: '1700000001.000001', status: 'thinking' });
    slack.setStatusResult = 'not_allowed_token_type';
    await assert.rejects(client.assistant.threads.setStatus({ channel_id: 'C1', thread_ts: '1700000001.000001', status: 'x' }), /not_allowed_token_type/);
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
    assert.equal(slack.uploads.length, 3);
    const [chart, csv, text] = slack.uploads;
    assert.equal(chart?.filename, 'chart.png');
    assert.equal(chart?.title, 'out/chart.png');
    assert.equal(chart?.channelId, 'C2');
    assert.equal(chart?.threadTs, '1700000002.000001');
    assert.equal(chart?.initialComment, 'Here it is');
    assert.ok(chart?.bytes.equals(bytes));
    assert.equal(chart?.declaredLength, bytes.length);
    assert.equal(csv?.bytes.toString(), 'a,b\n1,2\n');
    assert.equal(text?.bytes.toString(), 'hello');
    const shares = slack.botMessagesIn('C2', '1700000002.000001').flatMap((message) => message.files ?? []);
    assert.deepEqual(shares.map((file) => file.name).sort(), ['a.csv', 'b.txt', 'chart.png']);
    assert.equal(slack.callsTo('files.completeUploadExternal').length, 2);
  });

  test('url_private_download serves bytes only with the bot token, the HTML login page otherwise', async () => {
    const content = Buffer.from('region,sales\nnorth,10\n');
    const file = slack.addFile({ name: 'sales.csv', content, mimetype: 'text/csv' });
    const withToken = await fetch(file.url_private_download, { headers: { Authorization: `Bearer ${botToken}` } });
    assert.equal(withToken.status, 200);
    assert.ok(Buffer.from(await withToken.arrayBuffer()).equals(content));
    for (const headers of [{}, { Authorization: 'Bearer xoxb-wrong' }] as Array<Record<string, string>>) {
      const anonymous = await fetch(file.url_private_download, { headers });
      assert.equal(anonymous.status, 200);
      assert.match(anonymous.headers.get('content-type') ?? '', /^text\/html/);
      assert.equal(await anonymous.text(), LOGIN_PAGE_HTML);
    }
    slack.setFileMode(file.id, 'login-page');
    const noScope = await fetch(file.url_private_download, { headers: { Authorization: `Bearer ${botToken}` } });
    assert.match(await noScope.text(), /^<!DOCTYPE html>/);
    slack.setFileMode(file.id, 'deleted');
    const deleted = await fetch(file.url_private_download, { headers: { Authorization: `Bearer ${botToken}` } });
    assert.equal(deleted.status, 404);
    await deleted.body?.cancel();
    await assert.rejects(client.files.info({ file: file.id }), /file_not_found/);
  });

  test('a huge generated file streams with the right length and bytes', async () => {
    const size = 20 * 1024 * 1024 + 3;
    const file = slack.addFile({ name: 'big.csv', content: generatedContent(size, 'x,y\n'), size });
    assert.equal((await client.files.info({ file: file.id })).file?.size, size);
    const response = await fetch(file.url_private_download, { headers: { Authorization: `Bearer ${botToken}` } });
    assert.equal(response.headers.get('content-length'), String(size));
    let total = 0;
    const hash = createHash('sha256');
    for await (const chunk of response.body!) {
      total += chunk.length;
      hash.update(chunk);
    }
    assert.equal(total, size);
    const expected = createHash('sha256').update(Buffer.from('x,y\n'.repeat(Math.ceil(size / 4)).slice(0, size))).digest('hex');
    assert.equal(hash.digest('hex'), expected);
  });

  test('rate limiting answers 429 and the real client retries', async () => {
    slack.rateLimit('chat.postMessage', { every: 2 });
    const limited = new WebClient(botToken, { slackApiUrl: slack.apiUrl, logLevel: WebLogLevel.ERROR });
    let rateLimitedEvents = 0;
    limited.on(WebClientEvent.RATE_LIMITED, () => rateLimitedEvents++);
    const before = slack.callsTo('chat.postMessage').length;
    await limited.chat.postMessage({ channel: 'C3', text: 'one' });
    await limited.chat.postMessage({ channel: 'C3', text: 'two' });
    assert.equal(rateLimitedEvents, 1);
    assert.equal(slack.rateLimited.length, 1);
    assert.equal(slack.callsTo('chat.postMessage').length - before, 2);
    slack.clearRateLimits();
  });

  test('waitFor resolves on a later call and rejects with a dump on timeout', async () => {
    const waiting = slack.waitFor((fake) => fake.callsTo('chat.postMessage').find((call) => call.args.text === 'later'));
    await client.chat.postMessage({ channel: 'C4', text: 'later' });
    assert.equal((await waiting).args.channel, 'C4');
    await assert.rejects(slack.waitFor(() => false, 50), /waitFor timed out after 50 ms[\s\S]*chat.postMessage/);
  });
});

describe('signed events against a real Bolt app', () => {
  const signingSecret = 'test-signing-secret';
  const slack = new FakeSlack({ botToken, botUserId: 'UBOT', teamId: 'T1' });
  const mentions: Array<{ text: string; channel: string; thread_ts?: string; files?: unknown[] }> = [];
  const clicks: string[] = [];
  let app: App;
  let eventsUrl: string;
  before(async () => {
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
  after(async () => {
    await app.stop();
    await slack.close();
  });

  test('an app_mention signed with the right secret reaches the listener', async () => {
    const file = slack.addFile({ name: 'a.csv', content: 'a\n1\n' });
    const event = mentionEvent({ channel: 'C9', user: 'U1', text: mentionText('UBOT', 'hello'), thread_ts: '1700000009.000001', files: [file] });
    slack.seedFromEvent(event);
    const result = await postEvent(eventsUrl, signingSecret, event);
    assert.equal(result.status, 200);
    await slack.waitFor((fake) => fake.messagesIn('C9', '1700000009.000001').length > 0);
    assert.deepEqual(mentions.map((mention) => mention.text), ['<@UBOT> hello']);
    assert.equal((mentions[0]?.files as Array<{ id: string }>)[0]?.id, file.id);
    const replies = await new WebClient(botToken, { slackApiUrl: slack.apiUrl }).conversations.replies({ channel: 'C9', ts: String(event.ts) });
    assert.equal(replies.messages?.[0]?.files?.[0]?.id, file.id);
    assert.deepEqual(slack.unexpected, []);
  });

  test('a bad signature or a stale timestamp is rejected with 401', async () => {
    const event = mentionEvent({ channel: 'C9', user: 'U1', text: mentionText('UBOT', 'evil') });
    assert.equal((await postEvent(eventsUrl, 'wrong-secret', event)).status, 401);
    const stale = Math.floor(Date.now() / 1000) - 10 * 60;
    assert.equal((await postEvent(eventsUrl, signingSecret, event, { timestamp: stale })).status, 401);
    const tampered = signedRequest(signingSecret, JSON.stringify({ type: 'event_callback', event }));
    const response = await fetch(eventsUrl, { method: 'POST', headers: tampered.headers, body: tampered.body.replace('evil', 'nice') });
    assert.equal(response.status, 401);
    assert.ok(!mentions.some((mention) => /evil|nice/.test(mention.text)));
  });

  test('url_verification and a signed block_actions click', async () => {
    const verification = await postUrlVerification(eventsUrl, signingSecret, 'challenge-123');
    assert.equal(verification.status, 200);
    assert.match(verification.body, /challenge-123/);
    const click = await postBlockAction(eventsUrl, signingSecret, { actionId: 'stop', user: 'U7', channel: 'C9', messageTs: '1700000009.000002', responseUrl: slack.newResponseUrl() });
    assert.equal(click.status, 200);
    assert.deepEqual(clicks, ['U7']);
  });
});

describe('FakeOpenAI with the real openai client', () => {
  const ai = new FakeOpenAI({ apiKey: 'sk-test' });
  let client: OpenAI;
  const tools: OpenAI.Chat.ChatCompletionTool[] = [
    { type: 'function', function: { name: 'execute', parameters: { type: 'object', properties: { language: { type: 'string' }, code: { type: 'string' } } } } },
  ];
  before(async () => {
    await ai.start();
    client = new OpenAI({ apiKey: 'sk-test', baseURL: ai.baseUrl, maxRetries: 2 });
  });
  after(() => ai.close());

  test('non-streaming: a tool call, then an answer that depends on the tool result', async () => {
    ai.script((request) => {
      const results = toolResults(request, { sinceLastUser: true });
      if (results.length === 0) return executeCall('print(sum(range(101)))', 'call_a');
      return { content: `The sum is ${results[0]!.content.trim()} (${lastUserText(request)})`, usage: { prompt_tokens: 11, completion_tokens: 5 } };
    });
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'sum 1..100' }];
    const first = await client.chat.completions.create({ model: 'gpt-test', messages, tools });
    const call = first.choices[0]?.message.tool_calls?.[0];
    assert.equal(first.choices[0]?.finish_reason, 'tool_calls');
    assert.ok(call && call.type === 'function');
    assert.equal(call.id, 'call_a');
    assert.deepEqual(JSON.parse(call.function.arguments), { language: 'python', code: 'print(sum(range(101)))' });
    messages.push(first.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: '5050\n' });
    const second = await client.chat.completions.create({ model: 'gpt-test', messages, tools });
    assert.equal(second.choices[0]?.message.content, 'The sum is 5050 (sum 1..100)');
    assert.deepEqual(second.usage, { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 });
    assert.equal(ai.requests.length, 2);
    assert.equal(ai.requests[1]?.headers.authorization, 'Bearer sk-test');
    assert.equal(ai.requests[1]?.body.messages.length, 3);
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
    assert.equal(text, 'Hello, streaming world!');
    assert.ok(chunks > 3, 'content arrives in several deltas');
    assert.deepEqual(usage, { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
    const runner = client.chat.completions.stream({ model: 'gpt-test', messages: [{ role: 'user', content: 'run' }], tools });
    const final = await runner.finalChatCompletion();
    const call = final.choices[0]?.message.tool_calls?.[0];
    assert.ok(call && call.type === 'function');
    assert.equal(call.function.name, 'execute');
    assert.deepEqual(JSON.parse(call.function.arguments), { language: 'python', code: 'x = 1\nprint(x)' });
    assert.equal(final.choices[0]?.finish_reason, 'tool_calls');
    ai.assertExhausted();
  });

  test('errors are retried by the client; unscripted requests answer 500 and are recorded', async () => {
    ai.enqueue({ error: { status: 429, message: 'slow down' } }, { content: 'after retry' });
    const retried = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(retried.choices[0]?.message.content, 'after retry');
    ai.enqueue({ error: { status: 400, message: 'bad request' } });
    await assert.rejects(client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] }), (error: unknown) => error instanceof OpenAI.BadRequestError);
    const before = ai.requests.length;
    const noRetry = new OpenAI({ apiKey: 'sk-test', baseURL: ai.baseUrl, maxRetries: 0 });
    await assert.rejects(noRetry.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] }), (error: unknown) => error instanceof OpenAI.InternalServerError);
    assert.equal(ai.requests.length, before + 1);
    assert.equal(ai.unexpected.length, 1);
    const wrongKey = new OpenAI({ apiKey: 'sk-wrong', baseURL: ai.baseUrl, maxRetries: 0 });
    await assert.rejects(wrongKey.chat.completions.create({ model: 'gpt-test', messages: [] }), (error: unknown) => error instanceof OpenAI.AuthenticationError);
    assert.throws(() => ai.assertExhausted(), /not exhausted/);
  });

  test('a delayed reply is marked aborted when the client gives up', async () => {
    ai.enqueue({ content: 'too late', delayMs: 5000 });
    const controller = new AbortController();
    const pending = client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'slow' }] }, { signal: controller.signal });
    const request = await ai.waitFor((fake) => fake.requests.find((entry) => lastUserText(entry.body) === 'slow'));
    controller.abort();
    await assert.rejects(pending, (error: unknown) => error instanceof OpenAI.APIUserAbortError);
    await ai.waitFor(() => request.aborted);
  });
});
