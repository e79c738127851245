import { describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../controller/logger.js';
import type { Mention } from '../controller/slack/mention.js';
import { Bot } from '../controller/turn/bot.js';
import { type SessionFakes, useSessionFakes } from './helpers/cloud-run-session-fakes.js';
import { testConfig } from './helpers/in-process-bot.js';
import { RecordingSlackThreads } from './helpers/recording-slack-thread.js';
import { executeReply, ScriptedModel, type ScriptedReply } from './helpers/scripted-model.js';

// The speculative start (issue 13): a turn opens its Cloud Run session when the mention arrives, so the
// execution's cold start overlaps the model's first answer. The Bot in process with the real CloudRunSandbox,
// GCS store and Cloud Run client against the fakes; the model's first reply is held until the runJob was seen.

let counter = 0;
const mention = (text: string, threadTs?: string): Mention => {
  const ts = `1700000300.${String(++counter).padStart(6, '0')}`;
  return { key: { team: 'T1', channel: 'C1', threadTs: threadTs ?? ts }, user: 'U1', text, ts, files: [] };
};

describe('a turn on Cloud Run sessions', () => {
  let fakes: SessionFakes;
  useSessionFakes((started) => (fakes = started));

  function bot(script: ScriptedReply[]): { bot: Bot; model: ScriptedModel; slack: RecordingSlackThreads } {
    const model = new ScriptedModel(script);
    const slack = new RecordingSlackThreads();
    const sandbox = fakes.sandbox();
    const config = testConfig({ STORAGE_BACKEND: 'gcs', GCS_BUCKET: 'oi-sessions', SANDBOX_BACKEND: 'cloudrun', GCP_PROJECT: 'p', GCP_REGION: 'r', SANDBOX_JOB: 'j' });
    const created = new Bot({ config, threads: slack.factory, model, store: fakes.clients.store, sandbox, systemPrompt: 'test', logger: silentLogger });
    return { bot: created, model, slack };
  }

  it('starts the execution when the mention arrives, before the model has answered, and keeps it for the next turn', async () => {
    fakes.run.startDelayMs = 300;
    const runsBefore = fakes.run.runs.length;
    let answer: () => void = () => {};
    const held = new Promise<void>((resolve) => (answer = resolve));
    const { bot: first, model, slack } = bot([
      async () => {
        await held;
        return executeReply('favourite = 6 * 7\nprint(favourite)');
      },
      (request) => ({ content: `Result: ${String(request.messages.at(-1)?.content ?? '')}` }),
      executeReply('print(favourite + 1)'),
      (request) => ({ content: `Result: ${String(request.messages.at(-1)?.content ?? '')}` }),
    ]);
    const opening = mention('compute my favourite number');
    const turn = first.handleMention(opening);
    await fakes.run.waitFor((run) => run.runs.length > runsBefore);
    // The model is asked once the user's message is built (the thread read back, files saved): its answer is held.
    await vi.waitFor(() => expect(model.requests, 'the model was asked').toHaveLength(1), { timeout: 10_000 });
    expect(fakes.run.runs.length - runsBefore, 'runJob called while the model’s answer is held').toBe(1);
    answer();
    await turn;
    await first.handleMention(mention('and one more?', opening.key.threadTs));
    await first.drain();
    const texts = slack.thread('C1', opening.key.threadTs).texts.join('\n');
    expect(texts).toMatch(/Result: [\s\S]*42/);
    expect(texts).toMatch(/Result: [\s\S]*43/);
    expect(fakes.run.runs.length - runsBefore, 'one execution served both turns').toBe(1);
    model.assertComplete();
  });
});
