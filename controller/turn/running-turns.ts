import { randomUUID } from 'node:crypto';

/**
 * Stop: the model turns running now, each with the AbortController that stops it. The status message's Stop
 * button carries the turn's id; Slack's own Stop control (the agent_session_stopped event) names the thread.
 * Either way only the person who started the turn or an admin may stop it. Stopping aborts the turn's signal:
 * the agent loop ends, and the sandbox kills the running step.
 */

export type StopOutcome = 'stopped' | 'not_allowed' | 'not_running';

export interface RunningTurn {
  readonly id: string;
  readonly signal: AbortSignal;
  /** The turn is over: it can no longer be stopped. */
  finish(): void;
}

export class RunningTurns {
  private readonly turns = new Map<string, { controller: AbortController; user: string; thread?: string }>();

  constructor(private readonly adminUsers: readonly string[]) {}

  /** A turn of `user`: `id` is its id in the thread's journal (the Stop button carries it), `thread` its path (Slack's Stop names the thread). */
  start(user: string, options: { id?: string; thread?: string } = {}): RunningTurn {
    const id = options.id ?? randomUUID();
    const thread = options.thread;
    const controller = new AbortController();
    this.turns.set(id, { controller, user, ...(thread === undefined ? {} : { thread }) });
    return { id, signal: controller.signal, finish: () => this.turns.delete(id) };
  }

  stop(turnId: string, user: string): StopOutcome {
    const turn = this.turns.get(turnId);
    if (turn === undefined) return 'not_running';
    if (!this.mayStop(turn.user, user)) return 'not_allowed';
    turn.controller.abort();
    return 'stopped';
  }

  /** The rule, also for a turn another instance runs: the person who asked for it (`owner`), or an admin. */
  mayStop(owner: string, user: string): boolean {
    return owner === user || this.adminUsers.includes(user);
  }

  /** Slack's own Stop control names the thread, not the turn: the thread's running turn, by the same rule. */
  stopThread(thread: string, user: string): StopOutcome {
    for (const [id, turn] of this.turns) if (turn.thread === thread) return this.stop(id, user);
    return 'not_running';
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
