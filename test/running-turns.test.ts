/** Stop (turn/running-turns.ts): who may stop a running turn, and what the clicker is told otherwise. */
import { describe, expect, test } from 'vitest';
import { RunningTurns, stopReply } from '../controller/turn/running-turns.js';

describe('running turns', () => {
  test('the asker stops their turn: its signal aborts, and it cannot be stopped twice', () => {
    const running = new RunningTurns([]);
    const turn = running.start('U1');
    expect(turn.signal.aborted).toBe(false);
    expect(running.stop(turn.id, 'U1')).toBe('stopped');
    expect(turn.signal.aborted).toBe(true);
    turn.finish();
    expect(running.stop(turn.id, 'U1')).toBe('not_running');
  });

  test('someone else may not; an admin may', () => {
    const running = new RunningTurns(['UADMIN']);
    const turn = running.start('U1');
    expect(running.stop(turn.id, 'U2')).toBe('not_allowed');
    expect(turn.signal.aborted).toBe(false);
    expect(running.stop(turn.id, 'UADMIN')).toBe('stopped');
    expect(turn.signal.aborted).toBe(true);
  });

  test('an unknown or finished turn id is not running', () => {
    const running = new RunningTurns([]);
    expect(running.stop('no-such-turn', 'U1')).toBe('not_running');
    const turn = running.start('U1');
    turn.finish();
    expect(running.stop(turn.id, 'U1')).toBe('not_running');
    expect(turn.signal.aborted).toBe(false);
  });

  test('stopAll (shutdown) aborts every running turn', () => {
    const running = new RunningTurns([]);
    const turns = [running.start('U1'), running.start('U2')];
    running.stopAll();
    expect(turns.map((turn) => turn.signal.aborted)).toStrictEqual([true, true]);
  });

  test("Slack's own Stop names the thread: its running turn stops for the asker or an admin, not for someone else", () => {
    const running = new RunningTurns(['UADMIN']);
    const turn = running.start('U1', { thread: 'T1/C1/1.000100' });
    const other = running.start('U1', { thread: 'T1/C1/2.000100' });
    expect(running.stopThread('T1/C1/1.000100', 'U2')).toBe('not_allowed');
    expect(turn.signal.aborted).toBe(false);
    expect(running.stopThread('T1/C1/1.000100', 'U1')).toBe('stopped');
    expect([turn.signal.aborted, other.signal.aborted]).toStrictEqual([true, false]);
    expect(running.stopThread('T1/C1/2.000100', 'UADMIN')).toBe('stopped');
    turn.finish();
    expect(running.stopThread('T1/C1/1.000100', 'U1')).toBe('not_running');
    expect(running.stopThread('T1/C1/9.000100', 'U1')).toBe('not_running');
  });

  test('each turn has its own id', () => {
    const running = new RunningTurns([]);
    expect(running.start('U1').id).not.toBe(running.start('U1').id);
  });

  test('the clicker hears why nothing was stopped, and nothing when it was', () => {
    expect(stopReply('stopped')).toBe(undefined);
    expect(stopReply('not_allowed')).toBe('Only the person who asked, or an admin, can stop this turn.');
    expect(stopReply('not_running')).toBe('This turn has already finished.');
  });
});
