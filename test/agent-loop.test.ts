import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import OpenAI from 'openai';
import { runAgentLoop as runTurn, type AgentLoopInput as TurnInput } from '../controller/agent/agent-loop.js';
import { OpenAIChatModel } from '../controller/agent/chat-model.js';
import type { TurnLimits } from '../controller/agent/stop-conditions.js';
import { toModelMessages, estimateTokens, type HistoryMessage } from '../controller/agent/history.js';
import { parseExecuteArguments, stepTitle } from '../controller/agent/execute-tool.js';
import { SandboxError, type SandboxSession, type StepRequest, type StepResult } from '../controller/sandbox/sandbox.js';
import { FakeOpenAI, executeCall } from './fakes/fake-openai.js';

/** A sandbox session that records requests and answers from a function (the seam, not a module mock). */
class RecordingSandbox implements SandboxSession {
  readonly requests: StepRequest[] = [];
  constructor(private readonly answer: (request: StepRequest, signal?: AbortSignal) => Promise<Partial<StepResult>> | Partial<StepResult>) {}
  async release(): Promise<void> {}
  async run(request: StepRequest, options: { signal?: AbortSignal } = {}): Promise<StepResult> {
    this.requests.push(request);
    const partial = await this.answer(request, options.signal);
    return { stepId: `s${this.requests.length}`, exitCode: 0, stdout: '', stderr: '', outputTruncated: false, error: null, durationMs: 5, figures: [], files: [], unsaved: [], notes: [], ...partial };
  }
}

const limits: TurnLimits = { maxSteps: 3, stepTimeoutSec: 10, contextTokenBudget: 100_000, toolOutputChars: 2000 };

describe('agent loop', () => {
  let ai: FakeOpenAI;
  let openai: OpenAI;
  beforeAll(async () => {
    ai = await new FakeOpenAI({ apiKey: 'sk-loop' }).start();
    openai = new OpenAI({ apiKey: 'sk-loop', baseURL: ai.baseUrl, maxRetries: 0 });
  });
  afterAll(async () => ai.close());

  const input = (sandbox: SandboxSession, overrides: Partial<TurnInput> = {}): TurnInput => ({
    model: new OpenAIChatModel(openai, 'test-model'),
    session: sandbox,
    systemPrompt: 'system prompt',
    history: [],
    userMessage: { role: 'user', content: 'question' },
    limits,
    ...overrides,
  });

  test('runs the code the model asks for and answers with the result', async () => {
    ai.enqueue({ ...executeCall('print(6 * 7)'), usage: { total_tokens: 30 } }, { content: 'It is **42**.', usage: { total_tokens: 20 } });
    const sandbox = new RecordingSandbox(() => ({ stdout: '42\n' }));
    const events: string[] = [];
    const outcome = await runTurn(input(sandbox, { onEvent: (event) => events.push(event.type) }));
    expect(outcome.stopReason).toBe('answered');
    expect(outcome.answer).toBe('It is **42**.');
    expect(outcome.steps).toBe(1);
    expect(outcome.usage.totalTokens).toBe(50);
    expect(sandbox.requests).toStrictEqual([{ language: 'python', code: 'print(6 * 7)', timeoutSec: 10 }]);
    expect(outcome.messages.map((message) => message.role)).toStrictEqual(['user', 'assistant', 'tool', 'assistant']);
    expect(events).toStrictEqual(['model_call', 'step_started', 'step_finished', 'model_call']);
    const second = ai.requests.at(-1)!.body;
    expect(second.messages.at(-1)!.role).toBe('tool');
    expect(String(second.messages.at(-1)!.content)).toMatch(/^42/);
    expect((second.tools as { function: { name: string } }[])[0]!.function.name).toBe('execute');
  });

  test('streaming mode: the text arrives in pieces as the model writes it; tool calls and token counts as before', async () => {
    ai.enqueue({ content: 'Let me add them.', ...executeCall('print(1 + 2)'), usage: { total_tokens: 40 } }, { content: 'The sum is **3**, as computed.', usage: { total_tokens: 60 } });
    const sandbox = new RecordingSandbox(() => ({ stdout: '3\n' }));
    const pieces: string[] = [];
    const outcome = await runTurn(input(sandbox, { streamText: true, onEvent: (event) => event.type === 'text' && pieces.push(event.text) }));
    expect(outcome).toMatchObject({ stopReason: 'answered', answer: 'The sum is **3**, as computed.', steps: 1, usage: { totalTokens: 100 } });
    expect(sandbox.requests.map((request) => request.code)).toStrictEqual(['print(1 + 2)']);
    expect(pieces.length, 'more than one piece per reply').toBeGreaterThan(4);
    expect(pieces.join('')).toBe('Let me add them.The sum is **3**, as computed.');
    const requests = ai.requests.slice(-2).map((request) => request.body);
    expect(requests.map((body) => [body.stream, body.stream_options])).toStrictEqual([[true, { include_usage: true }], [true, { include_usage: true }]]);
    ai.assertExhausted();
  });

  test('stops at the step limit and asks the model to answer without tools', async () => {
    ai.script(() => executeCall('print(1)'));
    const sandbox = new RecordingSandbox(() => ({ stdout: '1' }));
    const outcome = await runTurn(input(sandbox));
    ai.script(() => ({ content: 'unused' }));
    expect(sandbox.requests.length).toBe(3);
    expect(outcome.stopReason).toBe('max_steps');
    expect(ai.requests.at(-1)!.body.tool_choice).toBe('none');
    const toolCalls = outcome.messages.filter((message) => message.role === 'assistant' && 'tool_calls' in message && message.tool_calls).length;
    expect(outcome.messages.filter((message) => message.role === 'tool'), 'every tool call has its result').toHaveLength(toolCalls);
  });

  test('a long turn does not pile abort listeners on the turn signal', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    let calls = 0;
    ai.script(() => (++calls <= 15 ? executeCall('print(1)') : { content: 'done' }));
    const controller = new AbortController();
    const outcome = await runTurn(input(new RecordingSandbox(() => ({ stdout: '1' })), { signal: controller.signal, limits: { ...limits, maxSteps: 20 } }));
    await new Promise((resolve) => setImmediate(resolve));
    process.off('warning', onWarning);
    expect(outcome.steps).toBe(15);
    expect(warnings.filter((name) => name === 'MaxListenersExceededWarning')).toStrictEqual([]);
  });

  test('bad tool arguments go back to the model, not to the sandbox', async () => {
    ai.enqueue({ toolCalls: [{ name: 'execute', arguments: '{not json' }] }, { toolCalls: [{ name: 'execute', arguments: { language: 'cobol', code: 'x' } }] }, { content: 'ok' });
    const sandbox = new RecordingSandbox(() => ({}));
    const outcome = await runTurn(input(sandbox));
    expect(sandbox.requests.length).toBe(0);
    expect(outcome.stopReason).toBe('answered');
    const tools = outcome.messages.filter((message) => message.role === 'tool').map((message) => String(message.content));
    expect(tools[0]!).toMatch(/not valid JSON/);
    expect(tools[1]!).toMatch(/not supported/);
  });

  test('a stop during a step ends the turn with every tool call answered', async () => {
    ai.enqueue({ toolCalls: [{ name: 'execute', arguments: { language: 'python', code: 'sleep' } }, { name: 'execute', arguments: { language: 'python', code: 'never' } }] });
    const controller = new AbortController();
    const sandbox = new RecordingSandbox(
      (_request, signal) =>
        new Promise((_resolve, reject) => {
          signal?.addEventListener('abort', () => reject(new SandboxError('cancelled', 'cancelled')));
          setTimeout(() => controller.abort(), 20);
        }),
    );
    const outcome = await runTurn(input(sandbox, { signal: controller.signal }));
    expect(outcome.stopReason).toBe('cancelled');
    expect(sandbox.requests.length).toBe(1);
    const tools = outcome.messages.filter((message) => message.role === 'tool');
    expect(tools).toHaveLength(2);
    expect(String(tools[0]!.content)).toMatch(/stopped/);
  });

  test('a token budget ends the turn cleanly', async () => {
    ai.enqueue({ ...executeCall('print(1)'), usage: { total_tokens: 500 } });
    const sandbox = new RecordingSandbox(() => ({ stdout: '1' }));
    const outcome = await runTurn(input(sandbox, { limits: { ...limits, maxTokens: 400 } }));
    expect(outcome.stopReason).toBe('token_budget');
    expect(sandbox.requests.length).toBe(0);
    expect(ai.pendingReplies).toBe(0);
  });

  test('a sandbox failure ends the turn as a sandbox error', async () => {
    ai.enqueue(executeCall('print(1)'));
    const sandbox = new RecordingSandbox(() => {
      throw new SandboxError('runner_failed', 'runner crashed');
    });
    const outcome = await runTurn(input(sandbox));
    expect(outcome.stopReason).toBe('sandbox_error');
    expect(outcome.error).toBeInstanceOf(SandboxError);
  });

  test('long tool output reaches the model with head and tail kept', async () => {
    ai.enqueue(executeCall('print(big)'), { content: 'done' });
    const stdout = `HEAD${'x'.repeat(50_000)}TAIL`;
    await runTurn(input(new RecordingSandbox(() => ({ stdout }))));
    const tool = String(ai.requests.at(-1)!.body.messages.at(-1)!.content);
    expect(tool.length).toBeLessThan(3000);
    expect(tool).toMatch(/^HEAD/);
    expect(tool).toMatch(/TAIL$/);
    expect(tool).toMatch(/cut|trimmed|omitted/i);
  });
});

describe('history for the model', () => {
  const turn = (index: number, outputChars: number): HistoryMessage[] => [
    { role: 'user', content: `question ${index}` },
    { role: 'assistant', content: null, tool_calls: [{ id: `call${index}`, type: 'function', function: { name: 'execute', arguments: '{}' } }] },
    { role: 'tool', tool_call_id: `call${index}`, content: 'o'.repeat(outputChars), meta: { step: { code: '', stdout: '', stderr: '', error: null, figures: [], durationMs: 1 } } },
    { role: 'assistant', content: `answer ${index}` },
  ];

  test('within budget nothing changes but meta is stripped', () => {
    const messages = toModelMessages(turn(1, 100), 10_000);
    expect(messages).toHaveLength(4);
    expect(messages.filter((message) => 'meta' in message), 'meta never reaches the model').toStrictEqual([]);
  });

  test('old tool output is trimmed first, then old turns dropped, never the current one', () => {
    const history = [...turn(1, 40_000), ...turn(2, 40_000), ...turn(3, 40_000)];
    const trimmed = toModelMessages(history, 5_000);
    expect(estimateTokens(trimmed)).toBeLessThanOrEqual(5_000);
    expect(trimmed.filter((message) => message.role === 'user'), 'trimming output was enough').toHaveLength(3);
    expect(String(trimmed[2]!.content)).toMatch(/trimmed/);

    const tight = toModelMessages(history, 300);
    expect(tight[0]!.role).toBe('user');
    expect(tight[0]!.content).toBe('question 3');
    const ids = tight.flatMap((message) => (message.role === 'tool' ? [message.tool_call_id] : []));
    expect(ids, 'tool results stay paired with their calls').toStrictEqual(['call3']);
  });
});

describe('execute tool arguments', () => {
  test('python, shell and titles', () => {
    expect(parseExecuteArguments('execute', '{"language":"python","code":"print(1)"}')).toStrictEqual({ language: 'python', code: 'print(1)', pythonCode: 'print(1)' });
    const shell = parseExecuteArguments('execute', '{"language":"shell","code":"ls -la \\"x\\""}');
    expect(shell).toMatchObject({ pythonCode: expect.stringContaining('subprocess') });
    expect(parseExecuteArguments('other', '{}')).toHaveProperty('problem');
    expect(parseExecuteArguments('execute', '{"language":"python","code":"  "}')).toHaveProperty('problem');
    expect(stepTitle('', '# Load the sales data\nimport pandas')).toBe('Load the sales data');
    expect(stepTitle('Let me plot it.\nMore text', 'plt.plot()')).toBe('Let me plot it.');
    expect(stepTitle('', 'print(1)')).toBe('print(1)');
  });
});
