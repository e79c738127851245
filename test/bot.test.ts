/**
 * Bot routing (turn/bot.ts) in process: allowlists, commands, the queue notice, Stop and the one catch-all,
 * with recording Slack threads, a scripted model and a scripted sandbox (no HTTP, no process).
 */
import { afterEach, describe, expect, test } from 'vitest';
import { loadHistory } from '../controller/agent/history.js';
import { SandboxError } from '../controller/sandbox/sandbox.js';
import type { WorkspaceStore } from '../controller/workspace/workspace.js';
import { Bot } from '../controller/turn/bot.js';
import { HELP_TEXT } from '../controller/turn/commands/parse-command.js';
import { startBot, type InProcessBot } from './helpers/in-process-bot.js';
import { stopButtonValue } from './helpers/recording-slack-thread.js';
import { executeReply } from './helpers/scripted-model.js';
import { ScriptedSandbox } from './helpers/scripted-sandbox.js';

let harness: InProcessBot | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

describe('Bot routing', () => {
  test('outside ALLOWED_CHANNELS a mention is refused in one line, a plain reply is ignored, an admin gets through', async () => {
    harness = await startBot({ env: { ALLOWED_CHANNELS: 'C9', ADMIN_USERS: 'UADMIN' }, script: [{ content: 'Hello admin.' }] });
    const refused = harness.mention('what is 1+1?');
    await harness.bot.handleMention(refused);
    expect(harness.slack.thread('C1', refused.key.threadTs).texts).toStrictEqual([
      "Sorry, I'm not enabled for you in this channel. Ask the people who run me to add it to the allowlist.",
    ]);
    const quiet = harness.mention('and this?', { explicit: false });
    await harness.bot.handleMention(quiet);
    expect(harness.slack.thread('C1', quiet.key.threadTs).messages).toStrictEqual([]);
    expect(harness.logs.filter((line) => line.message === 'mention refused by allowlist').length).toBe(2);

    const admin = harness.mention('hi', { user: 'UADMIN' });
    await harness.bot.handleMention(admin);
    expect(harness.slack.thread('C1', admin.key.threadTs).texts).toContain('Hello admin.');
    harness.model.assertComplete();
  });

  test('ALLOWED_USERS lets only its users in', async () => {
    harness = await startBot({ env: { ALLOWED_USERS: 'U7' } });
    const mention = harness.mention('hello');
    await harness.bot.handleMention(mention);
    expect(harness.slack.thread('C1', mention.key.threadTs).texts[0]).toMatch(/^Sorry, I'm not enabled for you/);
    expect(harness.model.requests).toStrictEqual([]);
  });

  test('an empty mention without files gets the help, and no model call', async () => {
    harness = await startBot();
    const mention = harness.mention('');
    await harness.bot.handleMention(mention);
    expect(harness.slack.thread('C1', mention.key.threadTs).texts).toStrictEqual([HELP_TEXT]);
    expect(harness.model.requests).toStrictEqual([]);
  });

  test('`download` and `ノートブック` are commands: answered without the model', async () => {
    harness = await startBot();
    const download = harness.mention(' Download ');
    await harness.bot.handleMention(download);
    expect(harness.slack.thread('C1', download.key.threadTs).texts).toStrictEqual(['There are no files in this thread yet. Attach files to a mention, or ask me to create some.']);
    const notebook = harness.mention('ノートブック');
    await harness.bot.handleMention(notebook);
    expect(harness.slack.thread('C1', notebook.key.threadTs).texts).toStrictEqual(['There is no code in this thread yet, so there is no notebook to export.']);
    expect(harness.model.requests).toStrictEqual([]);
  });

  test('a second mention while a turn runs is told it is queued, then runs after it with its history', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    harness = await startBot({
      script: [
        async () => {
          await gate;
          return { content: 'first answer' };
        },
        { content: 'second answer' },
      ],
    });
    const first = harness.mention('first question');
    const second = harness.mention('second question', { threadTs: first.key.threadTs });
    const thread = harness.slack.thread('C1', first.key.threadTs);
    const running = harness.bot.handleMention(first);
    await thread.waitFor(() => harness!.model.requests.length === 1);
    const queued = harness.bot.handleMention(second);
    await thread.waitFor((candidate) => candidate.texts.includes(":inbox_tray: Got it — I'll get to this after the current turn in this thread."));
    expect(harness.model.requests.length, 'the second turn waits for the first').toBe(1);
    release();
    await Promise.all([running, queued]);
    const answers = thread.texts.filter((text) => text.endsWith('answer'));
    expect(answers).toStrictEqual(['first answer', 'second answer']);
    const seen = harness.model.requests[1]!.messages.filter((message) => message.role === 'user').map((message) => message.content);
    expect(seen).toStrictEqual(['first question', 'second question']);
    harness.model.assertComplete();
  });

  test('knowsThread is true once a thread has a conversation (replies without a mention continue it)', async () => {
    harness = await startBot({ script: [{ content: 'ok' }] });
    const mention = harness.mention('hi');
    expect(await harness.bot.knowsThread(mention.key)).toBe(false);
    await harness.bot.handleMention(mention);
    expect(await harness.bot.knowsThread(mention.key)).toBe(true);
  });
});

describe('Stop through the Bot', () => {
  test('only the asker or an admin stops a running step; the thread and the history say so', async () => {
    const sandbox = new ScriptedSandbox(
      (_request, { signal }) =>
        new Promise((_resolve, reject) => {
          signal?.addEventListener('abort', () => reject(new SandboxError('cancelled', 'step cancelled')), { once: true });
        }),
    );
    harness = await startBot({ sandbox, env: { ADMIN_USERS: 'UADMIN' }, script: [executeReply('while True: pass')] });
    const mention = harness.mention('loop forever');
    const thread = harness.slack.thread('C1', mention.key.threadTs);
    const handled = harness.bot.handleMention(mention);
    await thread.waitFor(() => sandbox.requests.length === 1);
    const turnId = stopButtonValue(thread.messages[0])!;
    expect(turnId).toBeTruthy();

    expect(await harness.bot.stopTurn(turnId, 'U2')).toBe('Only the person who asked, or an admin, can stop this turn.');
    expect(await harness.bot.stopTurn(turnId, 'U1')).toBe(undefined);
    await handled;
    expect(thread.texts).toContain(':octagonal_sign: Stopped after 1 step. Mention me again to continue.');
    expect(thread.messages[0]!.text).toMatch(/^:octagonal_sign: Stopped · 1 step · /);
    expect(stopButtonValue(thread.messages[0]), 'the button is gone').toBe(undefined);
    expect(await harness.bot.stopTurn(turnId, 'U1')).toBe('This turn has already finished.');
    const history = await loadHistory(harness.store.open(mention.key));
    expect(history.at(-1)).toStrictEqual({ role: 'assistant', content: '(The user <@U1> or an admin stopped this turn.)' });
    expect(history.find((message) => message.role === 'tool')?.content).toBe('The user stopped this step before it finished.');
  });
});

describe('the one catch-all', () => {
  test('a failed turn is logged once as "turn failed", its message saved, its status ended, the thread told', async () => {
    const sandbox = new ScriptedSandbox();
    sandbox.session = () => {
      throw new Error('the sandbox backend is gone');
    };
    harness = await startBot({ sandbox });
    const mention = harness.mention('analyse this');
    await harness.bot.handleMention(mention);
    const thread = harness.slack.thread('C1', mention.key.threadTs);
    expect(thread.texts).toStrictEqual([':warning: Something went wrong on my side and this turn did not finish. Your message is saved; mention me again to retry.']);
    const failures = harness.logs.filter((line) => line.severity === 'ERROR');
    expect(failures.map((line) => line.message)).toStrictEqual(['turn failed']);
    expect(String(failures[0]!.error)).toMatch(/the sandbox backend is gone/);
    expect(await loadHistory(harness.store.open(mention.key))).toStrictEqual([
      { role: 'user', content: 'analyse this', meta: { ts: mention.ts, user: 'U1' } },
      { role: 'assistant', content: '(This turn failed on the bot side before it finished.)' },
    ]);
  });

  test('a failed command is logged once and told as a message not handled', async () => {
    harness = await startBot();
    const failingStore: WorkspaceStore = {
      open: () => {
        throw new Error('disk gone');
      },
      removeOlderThan: async () => ({ removedThreads: [] }),
      records: harness.store.records,
    };
    const bot = new Bot({ config: harness.config, threads: harness.slack.factory, model: harness.model, store: failingStore, sandbox: harness.sandbox, systemPrompt: '', logger: harness.logger });
    const mention = harness.mention('download');
    await bot.handleMention(mention);
    await bot.drain();
    expect(harness.slack.thread('C1', mention.key.threadTs).texts).toStrictEqual([':warning: Something went wrong on my side and this message was not handled. Please try again.']);
    expect(harness.logs.filter((line) => line.severity === 'ERROR').map((line) => line.message)).toStrictEqual(['turn failed']);
  });
});
