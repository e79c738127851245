/**
 * Proves the OpenAI, GCS and Cloud Run fakes speak the real wire formats and refuse what the real services refuse:
 * the real openai, @google-cloud/storage and @google-cloud/run clients are pointed at them, so the tests that use
 * them can trust both their answers and their refusals. (FakeSlack is proven in fake-slack.test.ts.)
 */

import { assert, afterAll, beforeAll, describe, expect, test } from 'vitest';
import OpenAI from 'openai';
import { protos } from '@google-cloud/run';
import { Storage } from '@google-cloud/storage';
import { loadConfig } from '../controller/config.js';
import { createGcpClients, EMULATOR_SANDBOX_TOKEN, type GcpClients } from '../controller/gcp/gcp-clients.js';
import { silentLogger } from '../controller/logger.js';
import { FakeCloudRun } from './fakes/fake-cloud-run.js';
import { FakeGcs } from './fakes/fake-gcs.js';
import { FakeOpenAI, executeCall, lastUserText, toolResults } from './fakes/fake-openai.js';

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
    expect(ai.requests).toHaveLength(2);
    expect(ai.requests[1]?.headers.authorization).toBe('Bearer sk-test');
    expect(ai.requests[1]?.body.messages).toHaveLength(3);
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
    expect(chunks, 'content arrives in several deltas').toBeGreaterThan(3);
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
    await expect(client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const before = ai.requests.length;
    const noRetry = new OpenAI({ apiKey: 'sk-test', baseURL: ai.baseUrl, maxRetries: 0 });
    await expect(noRetry.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(OpenAI.InternalServerError);
    expect(ai.requests.length).toBe(before + 1);
    expect(ai.unexpected).toHaveLength(1);
    const wrongKey = new OpenAI({ apiKey: 'sk-wrong', baseURL: ai.baseUrl, maxRetries: 0 });
    await expect(wrongKey.chat.completions.create({ model: 'gpt-test', messages: [] })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect(() => ai.assertExhausted()).toThrow(/not exhausted/);
    ai.unexpected.length = 0;
  });

  test('a delayed reply is marked aborted when the client gives up', async () => {
    ai.enqueue({ content: 'too late', delayMs: 5000 });
    const controller = new AbortController();
    const pending = client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'slow' }] }, { signal: controller.signal });
    const request = await ai.waitFor((fake) => fake.requests.find((entry) => lastUserText(entry.body) === 'slow'));
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(OpenAI.APIUserAbortError);
    await ai.waitFor(() => request.aborted);
  });

  test('tool calls not answered one for one are refused with the real API’s 400', async () => {
    const strict = new OpenAI({ apiKey: 'sk-test', baseURL: ai.baseUrl, maxRetries: 0 });
    const call = (id: string) => ({ id, type: 'function' as const, function: { name: 'execute', arguments: '{}' } });
    const asked: OpenAI.Chat.ChatCompletionMessageParam[] = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'two steps' },
      { role: 'assistant', content: null, tool_calls: [call('call_1'), call('call_2')] },
    ];
    const refusal = async (messages: OpenAI.Chat.ChatCompletionMessageParam[]) => {
      const error = await strict.chat.completions.create({ model: 'gpt-test', messages }).catch((caught: unknown) => caught);
      assert(error instanceof OpenAI.BadRequestError, `expected a 400, got ${String(error)}`);
      return { status: error.status, type: error.type, code: error.code, param: error.param, message: error.message };
    };
    const before = ai.requests.length;
    expect(await refusal([...asked, { role: 'tool', tool_call_id: 'call_1', content: 'one' }, { role: 'user', content: 'and?' }])).toStrictEqual({
      status: 400,
      type: 'invalid_request_error',
      code: null,
      param: 'messages.[4].role',
      message:
        "400 An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: call_2",
    });
    expect((await refusal([asked[1]!, { role: 'tool', tool_call_id: 'call_1', content: 'orphan' }])).param).toBe('messages.[1].role');
    expect((await refusal([...asked, { role: 'tool', tool_call_id: 'call_9', content: '?' }])).param).toBe('messages.[3].tool_call_id');
    expect(ai.requests.length, 'refused before any reply is used').toBe(before);
    expect(ai.unexpected, 'each refusal is recorded').toHaveLength(3);
    ai.unexpected.length = 0;

    ai.enqueue({ content: 'both answered' });
    const answered = [...asked, { role: 'tool' as const, tool_call_id: 'call_2', content: 'two' }, { role: 'tool' as const, tool_call_id: 'call_1', content: 'one' }];
    expect((await strict.chat.completions.create({ model: 'gpt-test', messages: answered })).choices[0]?.message.content).toBe('both answered');
  });

  test('a 429 says when to retry (retry-after, retry-after-ms) and how the limits stand (x-ratelimit-*)', async () => {
    ai.enqueue({ error: { status: 429 }, }, { content: 'after the wait' });
    const answer = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'limited' }] }).withResponse();
    expect(answer.data.choices[0]?.message.content).toBe('after the wait');
    const [limited, retry] = ai.requests.slice(-2);
    expect(limited?.status).toBe(429);
    expect(retry?.headers['x-stainless-retry-count'], 'the client retried').toBe('1');
    expect(answer.response.headers.get('x-request-id')).toMatch(/^req_/);

    ai.enqueue({ error: { status: 429, retryAfterMs: 1500 } });
    const raw = await fetch(`${ai.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-test', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'raw' }] }),
    });
    expect(raw.status).toBe(429);
    const headers = Object.fromEntries([...raw.headers].filter(([name]) => name.startsWith('retry-after') || name.startsWith('x-ratelimit-')));
    expect(headers).toStrictEqual({
      'retry-after': '2',
      'retry-after-ms': '1500',
      'x-ratelimit-limit-requests': '500',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '1500ms',
      'x-ratelimit-limit-tokens': '30000',
      'x-ratelimit-remaining-tokens': '29000',
      'x-ratelimit-reset-tokens': '2s',
    });
    expect(await raw.json()).toMatchObject({ error: { type: 'requests', code: 'rate_limit_exceeded', message: expect.stringMatching(/^Rate limit reached for gpt-test .* Please try again in 1500ms\./) } });
  });
});

describe('FakeGcs refuses what GCS refuses', () => {
  const gcs = new FakeGcs(['names-test']);
  let storage: Storage;
  beforeAll(async () => {
    const { url } = await gcs.start();
    storage = new Storage({ apiEndpoint: url, projectId: 'test-project' });
  });
  afterAll(() => gcs.close());

  test('object names GCS refuses are refused; names it merely discourages are kept', async () => {
    const bucket = storage.bucket('names-test');
    const refused = ['.', '..', 'line\nfeed', 'carriage\rreturn', '.well-known/acme-challenge/token', 'é'.repeat(513)];
    for (const name of refused) {
      await expect(bucket.file(name).save('x', { resumable: false }), JSON.stringify(name)).rejects.toMatchObject({ code: 400 });
    }
    const empty = await fetch(`${gcs.url}/upload/storage/v1/b/names-test/o?uploadType=media&name=`, { method: 'POST', body: 'x' });
    expect(empty.status).toBe(400);
    const kept = ['a#b[1]*?.csv', '.well-known/other', '..hidden', 'x'.repeat(1024), 'データ.csv'];
    for (const name of kept) await bucket.file(name).save('x', { resumable: false });
    expect(gcs.names('names-test')).toStrictEqual([...kept].sort((left, right) => Buffer.compare(Buffer.from(left), Buffer.from(right))));
    expect(gcs.unexpected).toStrictEqual([]);
  });

  test('injected 429 and 503 answer as GCS does, for as many requests as asked', async () => {
    const url = `${gcs.url}/storage/v1/b/names-test/o`;
    gcs.injectFailures(503, 1);
    gcs.injectFailures(429, 2, (request) => request.method === 'GET');
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 4; attempt++) statuses.push((await fetch(url)).status);
    expect(statuses).toStrictEqual([503, 429, 429, 200]);
    gcs.injectFailures(429, Infinity);
    const stormed = await fetch(url);
    expect(await stormed.json()).toMatchObject({ error: { code: 429, errors: [{ reason: 'rateLimitExceeded' }] } });
    gcs.clearInjections();
    expect((await fetch(url)).status).toBe(200);
  });
});

describe('FakeGcs applies preconditions exactly as GCS does', () => {
  const gcs = new FakeGcs(['preconditions']);
  let storage: Storage;
  beforeAll(async () => {
    const { url } = await gcs.start();
    storage = new Storage({ apiEndpoint: url, projectId: 'test-project', retryOptions: { maxRetryDelay: 1 } });
  });
  afterAll(() => gcs.close());
  const bucket = () => storage.bucket('preconditions');
  const status = (error: unknown) => (error as { code?: number }).code;
  /** A raw JSON API request (the client library turns some answers, such as 304, into something else). */
  const raw = async (method: string, name: string, query: string) =>
    (await fetch(`${gcs.url}/storage/v1/b/preconditions/o/${encodeURIComponent(name)}?${query}`, { method })).status;

  test('ifGenerationMatch=0 creates only when no live object exists; ifGenerationMatch=N replaces only generation N', async () => {
    const file = bucket().file('lease.json');
    await file.save('first', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    const first = Number(file.metadata.generation);
    const again = await file.save('second', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }).catch((error: unknown) => error);
    expect(status(again), 'create-if-absent on an existing object').toBe(412);
    expect(again).toMatchObject({ message: expect.stringMatching(/pre-conditions you specified did not hold/) });
    await file.save('second', { resumable: false, preconditionOpts: { ifGenerationMatch: first } });
    const second = Number(file.metadata.generation);
    expect(second).not.toBe(first);
    const stale = await file.save('third', { resumable: false, preconditionOpts: { ifGenerationMatch: first } }).catch((error: unknown) => error);
    expect(status(stale), 'compare-and-swap with a stale generation').toBe(412);
    const [bytes] = await file.download();
    expect(bytes.toString()).toBe('second');
    const missing = await bucket().file('never.json').save('x', { resumable: false, preconditionOpts: { ifGenerationMatch: first } }).catch((error: unknown) => error);
    expect(status(missing), 'a missing object has generation 0').toBe(412);
  });

  test('deletes and reads with preconditions: 412 before 404, 304 for a NotMatch that holds, 400 for a bad value', async () => {
    const file = bucket().file('delete-me.json');
    await file.save('v1', { resumable: false });
    const generation = Number(file.metadata.generation);
    expect(status(await file.delete({ ifGenerationMatch: generation + 1 }).catch((error: unknown) => error))).toBe(412);
    expect(gcs.names('preconditions', 'delete-me')).toStrictEqual(['delete-me.json']);
    await file.delete({ ifGenerationMatch: generation });
    expect(gcs.names('preconditions', 'delete-me')).toStrictEqual([]);
    expect(await raw('DELETE', 'delete-me.json', `ifGenerationMatch=${generation}`), 'gone: generation 0 no longer matches').toBe(412);
    expect(await raw('DELETE', 'delete-me.json', ''), 'gone, no precondition').toBe(404);
    expect(await raw('GET', 'delete-me.json', 'ifGenerationMatch=0'), 'the precondition holds, then the object is missing').toBe(404);

    const kept = bucket().file('kept.json');
    await kept.save('v1', { resumable: false });
    const current = Number(kept.metadata.generation);
    expect(await raw('GET', 'kept.json', `ifGenerationMatch=${current}`)).toBe(200);
    expect(await raw('GET', 'kept.json', `ifGenerationMatch=${current - 1}`)).toBe(412);
    expect(await raw('GET', 'kept.json', `ifGenerationNotMatch=${current}`)).toBe(304);
    expect(await raw('GET', 'kept.json', 'ifMetagenerationMatch=1')).toBe(200);
    expect(await raw('GET', 'kept.json', 'ifMetagenerationMatch=2')).toBe(412);
    expect(await raw('GET', 'kept.json', 'ifMetagenerationNotMatch=1')).toBe(304);
    expect(await raw('GET', 'kept.json', 'ifGenerationMatch=soon')).toBe(400);
    expect(await raw('DELETE', 'kept.json', `ifMetagenerationMatch=2`)).toBe(412);
    expect(gcs.names('preconditions', 'kept')).toStrictEqual(['kept.json']);
    expect(gcs.unexpected).toStrictEqual([]);
  });

  test('a lost answer: the write was made, the client retries it and meets its own write with a 412', async () => {
    // A client of its own: under its default RetryConditional the library stops retrying on a client once it has
    // saved without a precondition, as the test above did (controller/gcp/gcp-clients.ts builds its client with
    // RetryAlways for that reason).
    const client = new Storage({ apiEndpoint: gcs.url, projectId: 'test-project', retryOptions: { maxRetryDelay: 1 } });
    const file = client.bucket('preconditions').file('lost.json');
    gcs.loseResponses(1, (request) => request.query.name === 'lost.json');
    const outcome = await file.save('mine', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }).catch((error: unknown) => error);
    expect(status(outcome)).toBe(412);
    const statuses = gcs.requests.filter((request) => request.query.name === 'lost.json').map((request) => request.status);
    expect(statuses).toStrictEqual([503, 412]);
    const [bytes] = await file.download();
    expect(bytes.toString(), 'the first attempt was applied').toBe('mine');
  });
});

describe('FakeCloudRun reports executions like the v2 API and refuses what it refuses', () => {
  const gcs = new FakeGcs(['run-test']);
  const run = new FakeCloudRun({ gcs, project: 'p', region: 'r', job: 'j', expectedToken: EMULATOR_SANDBOX_TOKEN });
  let clients: GcpClients;
  beforeAll(async () => {
    const [{ url: gcsUrl }, { url: runUrl }] = await Promise.all([gcs.start(), run.start()]);
    const env = { SLACK_BOT_TOKEN: 'xoxb-t', SLACK_SIGNING_SECRET: 's', OPENAI_API_KEY: 'sk', STORAGE_BACKEND: 'gcs', GCS_BUCKET: 'run-test' };
    const config = loadConfig({ ...env, GCS_API_ENDPOINT: gcsUrl, SANDBOX_BACKEND: 'cloudrun', GCP_PROJECT: 'p', GCP_REGION: 'r', SANDBOX_JOB: 'j', CLOUD_RUN_API_ENDPOINT: runUrl });
    clients = createGcpClients(config, silentLogger);
  });
  afterAll(async () => {
    await clients.sandbox.close();
    await Promise.all([gcs.close(), run.close()]);
  });

  test('an execution has createTime, startTime, completionTime and conditions; a finished one cannot be cancelled', async () => {
    run.mode = 'fail';
    const env = { OI_BUCKET: 'run-test', OI_PREFIX: 'workspaces/T1/C1/1.2/', OI_STEP_ID: 's1', OI_TOKEN: EMULATOR_SANDBOX_TOKEN };
    const [operation] = await clients.jobsClient.runJob({
      name: 'projects/p/locations/r/jobs/j',
      overrides: { containerOverrides: [{ env: Object.entries(env).map(([name, value]) => ({ name, value })) }], taskCount: 1, timeout: { seconds: 60 } },
    });
    const [execution] = await operation.promise();
    expect(execution.createTime?.seconds).toBeDefined();
    expect(execution.startTime?.seconds).toBeDefined();
    expect(Number(execution.completionTime?.seconds)).toBeGreaterThanOrEqual(Number(execution.startTime?.seconds));
    expect(execution.failedCount).toBe(1);
    const { State, ExecutionReason } = protos.google.cloud.run.v2.Condition;
    const completed = execution.conditions?.find((condition) => condition.type === 'Completed');
    expect(completed?.state).toBe(State.CONDITION_FAILED);
    expect(completed?.executionReason).toBe(ExecutionReason.NON_ZERO_EXIT_CODE);
    expect(execution.conditions?.map((condition) => condition.type)).toStrictEqual(['ResourcesAvailable', 'Started', 'Completed']);

    const refusal = await clients.executionsClient.cancelExecution({ name: execution.name! }).catch((error: unknown) => error);
    expect(refusal).toMatchObject({ code: 9, message: expect.stringMatching(/FAILED_PRECONDITION|has already completed/) });
    expect(run.refusedCancels).toStrictEqual([execution.name]);
    expect(run.cancelledExecutions).toStrictEqual([]);
    expect(run.requests.at(-1)).toMatchObject({ method: 'POST', status: 400 });
    expect(run.unexpected).toStrictEqual([]);
  });
});
