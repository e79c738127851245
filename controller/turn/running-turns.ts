import { randomUUID } from 'node:crypto';

/**
 * Stop: the model turns running now, each with the AbortController that stops it. The status message's Stop
 * button carries the turn's id; only the person who started the turn or an admin may stop it. Stopping
 * aborts the turn's signal: the agent loop ends, and the sandbox kills the running step.
 */

export type StopOutcome = 'stopped' | 'not_allowed' | 'not_running';

export interface RunningTurn {
  readonly id: string;
  readonly signal: AbortSignal;
  /** The turn is over: it can no longer be stopped. */
  finish(): void;
}

export class RunningTurns {
  private readonly turns = new Map<string, { controller: AbortController; user: string }>();

  constructor(private readonly adminUsers: readonly string[]) {}

  /** `id`: the turn's id in the thread's journal, when it has one (the Stop button carries it). */
  start(user: string, id: string = randomUUID()): RunningTurn {
    const controller = new AbortController();
    this.turns.set(id, { controller, user });
    return { id, signal: controller.signal, finish: () => this.turns.delete(id) };
  }

  stop(turnId: string, user: string): StopOutcome {
    const turn = this.turns.get(turnId);
    if (turn === undefined) return 'not_running';
    if (turn.user !== user && !this.adminUsers.includes(user)) return 'not_allowed';
    turn.controller.abort();
    return 'stopped';
  }

  /** Stops every running turn (shutdown); `reason` becomes each signal's abort reason. */
  stopAll(reason?: unknown): void {
    for (const turn of this.turns.values()) turn.controller.abort(reason);
  }
}

/** What the clicker is told when a Stop did not stop anything; undefined when it did. */
export function stopReply(outcome: StopOutcome): string | undefined {
  if (outcome === 'not_allowed') return 'Only the person who asked, or an admin, can stop this turn.';
  if (outcome === 'not_running') return 'This turn has already finished.';
  return undefined;
}
