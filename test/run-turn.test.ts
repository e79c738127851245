/**
 * One model turn (turn/run-turn.ts) in process: a recording SlackThread, a scripted ChatModel, and a scripted
 * or the real local sandbox (runner.py on real Python). What the thread shows, what the history and the usage
 * keep, and what happens when the turn fails.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { ModelError } from '../controller/agent/chat-model.js';
import { loadHistory } from '../controller/agent/history.js';
import { silentLogger } from '../controller/logger.js';
import { LocalSandbox } from '../controller/sandbox/local/local-sandbox.js';
import { toSlackMrkdwn } from '../controller/slack/mrkdwn.js';
import { StreamPacer } from '../controller/slack/stream-pacer.js';
import { runTurn } from '../controller/turn/run-turn.js';
import { StatusEdits } from '../controller/turn/status-edits.js';
import { TurnFailedError } from '../controller/turn/turn-ending.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { startBot, testConfig, type InProcessBot } from './helpers/in-process-bot.js';
import { RecordingSlackThread } from './helpers/recording-slack-thread.js';
import { executeReply, ScriptedModel } from './helpers/scripted-model.js';
import { ScriptedSandbox } from './helpers/scripted-sandbox.js';
import { jailIfAvailable } from './helpers/jail-available.js';

let harness: InProcessBot | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

describe('a turn with a scripted model and sandbox', () => {
  test('status, answer in mrkdwn, then the files the step wrote; history, usage and the session released', async () => {
    const sandbox = new ScriptedSandbox(async (_request, { workspace }) => {
      await workspace.write('summary.csv', 'region,total\neast,175.5\n');
      return { stdout: 'east 175.5\n', files: [{ path: 'summary.csv', change: 'created', size: 24 }], durationMs: 40 };
    });
    harness = await startBot({ sandbox, script: [{ ...executeReply('df.groupby("region").sum()'), totalTokens: 30 }, { content: 'East sold **175.5**.', totalTokens: 20 }] });
    const mention = harness.mention('total by region');
    await harness.bot.handleMention(mention);
    await harness.bot.drain();
    const thread = harness.slack.thread('C1', mention.key.threadTs);

    expect(thread.messages[0]!.text).toMatch(/^:white_check_mark: Done · 1 step · \d/);
    expect(thread.texts.slice(1)).toStrictEqual([toSlackMrkdwn('East sold **175.5**.')]);
    expect(thread.uploads.map((upload) => [upload.title, upload.content.toString()])).toStrictEqual([['summary.csv', 'region,total\neast,175.5\n']]);
    expect(sandbox.sessions).toBe(1);
    expect(sandbox.released, 'the turn hands its session back').toBe(1);
    harness.model.assertComplete();

    const workspace = harness.store.open(mention.key);
    const history = await loadHistory(workspace);
    expect(history.map((message) => message.role)).toStrictEqual(['user', 'assistant', 'tool', 'assistant']);
    expect(history[0]).toStrictEqual({ role: 'user', content: 'total by region', meta: { ts: mention.ts, user: 'U1' } });
    expect((await workspace.readState('usage'))?.value).toStrictEqual({ totalTokens: 50, sandboxMs: 40 });
  });

  test('a thread over THREAD_MAX_TOKENS is refused before the model is called', async () => {
    harness = await startBot({ env: { THREAD_MAX_TOKENS: '10' }, script: [{ content: 'first', totalTokens: 25 }] });
    const first = harness.mention('one');
    await harness.bot.handleMention(first);
    const second = harness.mention('two', { threadTs: first.key.threadTs });
    await harness.bot.handleMention(second);
    await harness.bot.drain();
    const thread = harness.slack.thread('C1', first.key.threadTs);
    expect(thread.texts).toContain(':no_entry: This thread has reached its budget (THREAD_MAX_TOKENS=10 model tokens). Start a new thread to continue.');
    expect(thread.texts.filter((text) => text === ':no_entry: This thread has used its budget.').length, 'the second status says so').toBe(1);
    expect(harness.model.requests.length).toBe(1);
    harness.model.assertComplete();
  });

  test('a model failure is told with its cause in one sentence; USAGE_FOOTER goes under that line', async () => {
    harness = await startBot({ env: { USAGE_FOOTER: 'true' }, script: [new ModelError('429', { userMessage: 'The model service is rate-limiting or out of quota (HTTP 429), even after retries.' })] });
    const mention = harness.mention('hello');
    await harness.bot.handleMention(mention);
    await harness.bot.drain();
    const thread = harness.slack.thread('C1', mention.key.threadTs);
    expect(thread.messages[0]!.text).toMatch(/^:warning: Model error · 0 steps · /);
    expect(thread.texts[1]).toBe(
      ':warning: The model service is rate-limiting or out of quota (HTTP 429), even after retries. Your message is saved; mention me again to retry.\n\n_0 tokens · 0.0 s of sandbox_',
    );
    const history = await loadHistory(harness.store.open(mention.key));
    expect(history.map((message) => message.content)).toStrictEqual(['hello', '(The turn ended because the model service failed.)']);
  });

  test('a turn that fails saves the user’s message, ends the status and throws one TurnFailedError', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'oi-run-turn-'));
    try {
      const workspace = new LocalWorkspaceStore(dataDir).open({ team: 'T1', channel: 'C1', threadTs: '1700000000.000100' });
      const thread = new RecordingSlackThread();
      const statusEdits = new StatusEdits();
      const model = new ScriptedModel([new Error('unused')]);
      const sandbox = new ScriptedSandbox();
      // The thread's usage cannot be read: a failure on the bot's side in the middle of the turn.
      const readState = workspace.readState.bind(workspace);
      workspace.readState = async <T>(name: string) => {
        if (name === 'usage') throw new Error('usage unreadable');
        return readState<T>(name);
      };
      const failed = runTurn(
        { config: testConfig(), model, sandbox, systemPrompt: '', statusEdits, pacer: new StreamPacer(0) },
        {
          mention: { key: workspace.key, user: 'U1', text: 'hi', ts: '1700000000.000100', files: [] },
          thread,
          workspace,
          turnId: 'turn-1',
          signal: new AbortController().signal,
          log: silentLogger,
        },
      );
      await expect(failed).rejects.toBeInstanceOf(TurnFailedError);
      await statusEdits.settle();
      expect(thread.messages[0]!.text).toBe(':warning: Failed');
      expect(thread.texts.length, 'the catch-all, not the turn, tells the thread').toBe(1);
      expect(sandbox.released).toBe(1);
      expect(model.requests).toStrictEqual([]);
      expect(await loadHistory(workspace)).toStrictEqual([
        { role: 'user', content: 'hi', meta: { ts: '1700000000.000100', user: 'U1' } },
        { role: 'assistant', content: '(This turn failed on the bot side before it finished.)' },
      ]);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('a turn with the real local sandbox', () => {
  let sandbox: LocalSandbox;
  beforeAll(() => {
    sandbox = new LocalSandbox({ network: 'off', isolation: jailIfAvailable(), logger: silentLogger, searchPath: process.env.PATH });
  });
  afterAll(() => sandbox.close());

  test('the model’s code runs in the thread’s workspace; the file it writes comes back to the thread', async () => {
    harness = await startBot({
      sandbox,
      script: [
        executeReply("open('answer.txt', 'w').write('forty-two')\nprint(6 * 7)"),
        (request) => ({ content: `The answer is ${String(request.messages.at(-1)!.content).split('\n')[0]}.` }),
      ],
    });
    const mention = harness.mention('what is six times seven?');
    await harness.bot.handleMention(mention);
    await harness.bot.drain();
    const thread = harness.slack.thread('C1', mention.key.threadTs);
    expect(thread.texts).toContain('The answer is 42.');
    expect(thread.uploads.map((upload) => [upload.title, upload.content.toString()])).toStrictEqual([['answer.txt', 'forty-two']]);
    harness.model.assertComplete();
  });
});
