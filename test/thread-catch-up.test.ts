/**
 * Thread catch-up (turn/thread-catch-up.ts) in process: which messages of the thread reach the model as context,
 * from which point, bounded how; the mark of the last message seen; what a failure to read the thread costs.
 * The wire (conversations.replies with paging, signed events, downloads) is tested end to end in
 * e2e-slack-native.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { appendHistory } from '../controller/agent/history.js';
import { silentLogger } from '../controller/logger.js';
import type { Mention } from '../controller/slack/mention.js';
import { catchUp, rememberSeen } from '../controller/turn/thread-catch-up.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import type { Workspace } from '../controller/workspace/workspace.js';
import { RecordingSlackThread } from './helpers/recording-slack-thread.js';

const THREAD = '1700000000.000100';
const ts = (n: number) => `1700000000.${String(100 + n).padStart(6, '0')}`;

describe('thread catch-up', () => {
  let dataDir: string;
  let threads = 0;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'oi-catch-up-'));
  });
  afterAll(() => rm(dataDir, { recursive: true, force: true }));

  const setup = (): { thread: RecordingSlackThread; workspace: Workspace } => {
    const threadTs = `${1700000000 + ++threads}.000100`;
    return { thread: new RecordingSlackThread('C1', threadTs), workspace: new LocalWorkspaceStore(dataDir).open({ team: 'T1', channel: 'C1', threadTs }) };
  };
  const mention = (at: number, extra: Partial<Mention> = {}): Mention => ({ key: { team: 'T1', channel: 'C1', threadTs: THREAD }, user: 'U1', text: 'go', ts: ts(at), files: [], botUserId: 'UBOT', ...extra });

  test('the first turn reads the thread so far: others’ words and shares, not bots’ (its own included), not other mentions', async () => {
    const { thread, workspace } = setup();
    thread.replies.push(
      { ts: ts(0), user: 'U2', text: 'Parent: Q3 numbers', files: [] },
      { ts: ts(1), user: 'U3', text: '', files: [{ id: 'F1', name: 'q3.csv' }] },
      { ts: ts(2), user: 'UBOT', botId: 'B1', text: 'an answer of the bot', files: [] },
      { ts: ts(3), user: 'UAPP', botId: 'B2', text: 'a message of another app', files: [] },
      { ts: ts(4), user: 'U4', text: '<@UBOT> download', files: [] },
      { ts: ts(5), user: 'U1', text: '<@UBOT> go', files: [{ id: 'F2', name: 'mine.csv' }] },
      { ts: ts(6), user: 'U2', text: 'written after the mention', files: [] },
    );
    const caught = await catchUp({ thread, workspace, mention: mention(5), log: silentLogger });
    expect(caught.context).toBe(
      'Others wrote in this thread since my last reply (context, not addressed to me):\n<@U2>: Parent: Q3 numbers\n<@U3>: [shared q3.csv]',
    );
    expect(caught.shared).toStrictEqual([{ user: 'U3', file: { id: 'F1', name: 'q3.csv' } }]);
    expect(caught.mentionFiles).toStrictEqual([{ id: 'F2', name: 'mine.csv' }]);
    expect(thread.calls.find((call) => call.method === 'readReplies')?.args).toStrictEqual({ upTo: ts(5) });
  });

  test('later turns read from the last message seen; the mark never moves back', async () => {
    const { thread, workspace } = setup();
    await rememberSeen(workspace, ts(4), silentLogger);
    await rememberSeen(workspace, ts(2), silentLogger);
    thread.replies.push({ ts: ts(3), user: 'U2', text: 'before the mark', files: [] }, { ts: ts(6), user: 'U2', text: 'after the mark', files: [] });
    const caught = await catchUp({ thread, workspace, mention: mention(7), log: silentLogger });
    expect(caught.context).toMatch(/<@U2>: after the mark$/);
    expect(caught.context).not.toContain('before the mark');
    expect(caught.mentionFiles, 'the mention itself was not among the replies').toBeUndefined();
  });

  test('a thread from before catch-up starts after the last message of its history', async () => {
    const { thread, workspace } = setup();
    await appendHistory(workspace, [{ role: 'user', content: 'old question', meta: { ts: ts(3), user: 'U1' } }, { role: 'assistant', content: 'old answer' }]);
    thread.replies.push({ ts: ts(2), user: 'U2', text: 'already answered', files: [{ id: 'F9', name: 'old.csv' }] }, { ts: ts(5), user: 'U2', text: 'new', files: [] });
    const caught = await catchUp({ thread, workspace, mention: mention(6), log: silentLogger });
    expect(caught.shared).toStrictEqual([]);
    expect(caught.context).toMatch(/<@U2>: new$/);
  });

  test('bounded: the 20 latest messages of at most 1,000 characters, 4,000 in all, the oldest dropped first', async () => {
    const { thread, workspace } = setup();
    for (let index = 0; index < 30; index++) thread.replies.push({ ts: ts(index), user: 'U2', text: `message ${index}\nsecond line`, files: [] });
    thread.replies.push({ ts: ts(30), user: 'U3', text: 'w'.repeat(5_000), files: [] });
    const caught = await catchUp({ thread, workspace, mention: mention(31), log: silentLogger });
    const lines = caught.context.split('\n');
    expect(lines.at(-1)).toBe(`<@U3>: ${'w'.repeat(999)}…`);
    expect(caught.context.length).toBeLessThan(4_200);
    expect(lines[1]).toMatch(/^\(\d+ earlier messages left out\)$/);
    expect(caught.context).toContain('<@U2>: message 29 / second line');
    expect(caught.context).not.toContain('message 0 ');
  });

  test('a thread that cannot be read costs the context only', async () => {
    const { thread, workspace } = setup();
    thread.readReplies = async () => {
      throw new Error('ratelimited');
    };
    expect(await catchUp({ thread, workspace, mention: mention(1), log: silentLogger })).toStrictEqual({ shared: [], sharedLeftOut: 0, context: '' });
  });
});
