import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EMULATOR_SANDBOX_TOKEN } from '../controller/gcp/gcp-clients.js';
import { SessionMailbox } from '../controller/sandbox/cloud-run/session-mailbox.js';
import { SESSION_STATE, type SessionRecord } from '../controller/sandbox/cloud-run/session-record.js';
import type { StepRequest } from '../controller/sandbox/sandbox.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { describeResult, type SessionFakes, useSessionFakes } from './helpers/cloud-run-session-fakes.js';

// The life of a Cloud Run session (issue 13): it crashes, runs out of token time, idles out, and outlives the
// controller that started it. Real CloudRunSandboxes against the fake Cloud Run (real relay and session runner).

const thread = (threadTs: string) => ({ team: 'T1', channel: 'C1', threadTs });
const python = (code: string, timeoutSec = 30): StepRequest => ({ language: 'python', code, timeoutSec });
const RESTORED = /restored from the checkpoint/;

describe('the life of a Cloud Run session', () => {
  let fakes: SessionFakes;
  useSessionFakes((started) => (fakes = started));

  it('a runner killed mid-step is reported as the step’s result; the next step starts a new session from the checkpoint', async () => {
    const runsBefore = fakes.run.runs.length;
    const session = fakes.sandbox().session(fakes.clients.store.open(thread('1700000200.000100')));
    await session.run(python('kept = 11'));
    const killed = await session.run(python('import os, signal\nos.kill(os.getpid(), signal.SIGKILL)'));
    expect(killed.error?.name, describeResult(killed, fakes.run)).toBe('RunnerEnded');
    expect(killed.error?.value).toMatch(/The sandbox session ended during this step/);
    expect(killed.notes.join(' ')).toMatch(/next step starts a new one/);
    const crashed = fakes.run.runs[runsBefore]!.executionName;
    await fakes.run.waitFor((run) => !run.running().includes(crashed));
    const next = await session.run(python('print(kept)'));
    expect(next.stdout, describeResult(next, fakes.run)).toBe('11\n');
    expect(next.notes.join(' ')).toMatch(RESTORED);
    expect(fakes.run.runs.length - runsBefore).toBe(2);
  });

  it('an execution that crashes during a step is noticed from its state: the step is reported, the next one works', async () => {
    const runsBefore = fakes.run.runs.length;
    const session = fakes.sandbox().session(fakes.clients.store.open(thread('1700000201.000100')));
    await session.run(python('kept = 12'));
    const running = session.run(python('import time\ntime.sleep(30)'));
    const execution = fakes.run.runs[runsBefore]!.executionName;
    await new Promise((resolve) => setTimeout(resolve, 500));
    fakes.run.crash(execution);
    const crashed = await running;
    expect(crashed.error?.name).toBe('RunnerEnded');
    expect(crashed.error?.value).toMatch(/Cloud Run execution failed: .*out of memory/);
    const next = await session.run(python('print(kept)'));
    expect(next.stdout, describeResult(next, fakes.run)).toBe('12\n');
    expect(fakes.run.runs.length - runsBefore).toBe(2);
  });

  it('a session near the end of its token is replaced before a step that would not fit: the old one exits', async () => {
    const runsBefore = fakes.run.runs.length;
    // Sessions of 12 s (the token's life asked for); a 2 s step needs 3 s left.
    const sandbox = fakes.sandbox({ timing: { tokenLifeSec: 12 } });
    const session = sandbox.session(fakes.clients.store.open(thread('1700000202.000100')));
    await session.run(python('rotated = 13', 2));
    const first = fakes.run.runs[runsBefore]!;
    expect(Number(first.env.OI_SESSION_END_AT) - Date.now() / 1000).toBeLessThanOrEqual(12);
    expect(first.timeoutSec, 'the task timeout covers the session').toBeGreaterThanOrEqual(Number(first.env.OI_SESSION_END_AT) - Date.now() / 1000);
    // OI_SESSION_END_AT is in whole seconds, at most a second before the session's end: 1.5 s before it, less than
    // the 3 s the next step needs is left.
    await new Promise((resolve) => setTimeout(resolve, Number(first.env.OI_SESSION_END_AT) * 1000 - Date.now() - 1_500));
    const next = await session.run(python('print(rotated)', 2));
    expect(next.stdout, describeResult(next, fakes.run)).toBe('13\n');
    expect(next.notes.join(' ')).toMatch(RESTORED);
    expect(fakes.run.runs.length - runsBefore).toBe(2);
    await fakes.run.waitFor((run) => !run.running().includes(first.executionName));
    const [state] = await fakes.clients.executionsClient.getExecution({ name: first.executionName });
    expect(Number(state.succeededCount), 'it exited on its own, it was not cancelled').toBe(1);
    expect(fakes.run.cancelledExecutions).not.toContain(first.executionName);
  });

  it('a restarted controller (or another instance) reuses the thread’s live session and never starts a second', async () => {
    const runsBefore = fakes.run.runs.length;
    const workspace = fakes.clients.store.open(thread('1700000203.000100'));
    const before = fakes.sandbox();
    const beforeTurn = before.session(workspace);
    await beforeTurn.run(python("import itertools\nticket = itertools.count(1)\nprint(next(ticket))"));
    const record = (await workspace.readState<SessionRecord>(SESSION_STATE))!.value;
    expect(record.executionName).toBe(fakes.run.runs[runsBefore]!.executionName);
    const restarted = fakes.sandbox();
    const reused = await restarted.session(workspace).run(python('print(next(ticket))'));
    expect(reused.stdout, `the counter lives in the runner's memory only\n${describeResult(reused, fakes.run)}`).toBe('2\n');
    expect(reused.notes).toStrictEqual([]);
    // The first controller's memory is stale now: a step of its old turn finds the record moved on (its
    // conditional write fails, nothing is sent) and follows it; so does its next turn.
    const stale = await beforeTurn.run(python('print(next(ticket))'));
    expect(stale.stdout, describeResult(stale, fakes.run)).toBe('3\n');
    const again = await before.session(workspace).run(python('print(next(ticket))'));
    expect(again.stdout, describeResult(again, fakes.run)).toBe('4\n');
    expect(fakes.run.runs.length - runsBefore).toBe(1);
  });

  it('a restarted controller replaces a session in which an earlier step still runs: cancelled first, never two', async () => {
    const runsBefore = fakes.run.runs.length;
    const workspace = fakes.clients.store.open(thread('1700000204.000100'));
    const lost = fakes.sandbox().session(workspace);
    await lost.run(python('kept = 14'));
    const abandoned = lost.run(python('import time\ntime.sleep(60)')).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const first = fakes.run.runs[runsBefore]!.executionName;
    const next = await fakes.sandbox().session(workspace).run(python('print(kept)'));
    expect(next.stdout, describeResult(next, fakes.run)).toBe('14\n');
    expect(fakes.run.cancelledExecutions).toContain(first);
    expect(fakes.run.runs.length - runsBefore).toBe(2);
    expect(fakes.run.running().filter((name) => fakes.run.runs.slice(runsBefore).some((run) => run.executionName === name))).toHaveLength(1);
    await abandoned;
  });

  it('an idle session exits after SANDBOX_SESSION_IDLE_SEC; the next step starts a new one from the checkpoint', async () => {
    const runsBefore = fakes.run.runs.length;
    const workspace = fakes.clients.store.open(thread('1700000205.000100'));
    const session = fakes.sandbox({ idleSec: 2 }).session(workspace);
    await session.run(python('kept = 15'));
    const first = fakes.run.runs[runsBefore]!;
    expect(first.env.OI_SESSION_IDLE_SEC).toBe('2');
    await fakes.run.waitFor((run) => !run.running().includes(first.executionName));
    const [state] = await fakes.clients.executionsClient.getExecution({ name: first.executionName });
    expect(Number(state.succeededCount)).toBe(1);
    const mailbox = (await workspace.list({ includeInternal: true })).filter((entry) => entry.path.startsWith('.oi/session/'));
    expect(mailbox.map((entry) => entry.path.split('/').at(-1)), 'the relay cleaned up after itself but for why it ended').toStrictEqual(['closed.json']);
    const next = await session.run(python('print(kept)'));
    expect(next.stdout, describeResult(next, fakes.run)).toBe('15\n');
    expect(fakes.run.runs.length - runsBefore).toBe(2);
  });

  it('a step sent just as the session idled out is run in a new session, once', async () => {
    const runsBefore = fakes.run.runs.length;
    // The controller believes the session fresh for far longer than the relay waits.
    const session = fakes.sandbox({ idleSec: 2, timing: { idleMarginSec: -600 } }).session(fakes.clients.store.open(thread('1700000206.000100')));
    await session.run(python('kept = 16'));
    const first = fakes.run.runs[runsBefore]!.executionName;
    await fakes.run.waitFor((run) => !run.running().includes(first));
    const next = await session.run(python('print(kept)'));
    expect(next.stdout, describeResult(next, fakes.run)).toBe('16\n');
    expect(fakes.run.runs.length - runsBefore).toBe(2);
  });

  it('the per-execution overrides carry only the session’s settings and the thread’s token', () => {
    for (const run of fakes.run.runs) {
      expect(run.env.OI_TOKEN).toBe(EMULATOR_SANDBOX_TOKEN);
      expect(Object.keys(run.env).filter((name) => !name.startsWith('OI_'))).toStrictEqual([]);
    }
  });
});

describe('the session mailbox', () => {
  it('refuses a result over 1 MB without reading it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'oi-mailbox-'));
    try {
      const workspace = new LocalWorkspaceStore(dir).open(thread('1700000207.000100'));
      const mailbox = new SessionMailbox(workspace, 'session-1');
      expect(await mailbox.readResult(1)).toStrictEqual({ kind: 'absent' });
      await workspace.write('.oi/session/session-1/results/1.json', Buffer.alloc(1024 * 1024 + 1, 0x20));
      expect(await mailbox.readResult(1)).toStrictEqual({ kind: 'too-large', size: 1024 * 1024 + 1 });
      await workspace.write('.oi/session/session-1/results/2.json', '{"type":"result"}');
      expect(await mailbox.readResult(2)).toStrictEqual({ kind: 'text', text: '{"type":"result"}' });
      await mailbox.remove(3);
      expect(await workspace.list({ includeInternal: true })).toStrictEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
