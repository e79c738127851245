import type { Workspace } from '../workspace/workspace.js';
import type { RunOptions, SandboxSession, StepRequest, StepResult } from './sandbox.js';

/** A backend's one-shot mode: start a runner for one step, return its result, leave nothing running. */
export interface OneStepRunner {
  run(workspace: Workspace, request: StepRequest, options?: RunOptions): Promise<StepResult>;
}

/**
 * A session in which every step starts a fresh runner (which restores the thread's variables from the
 * checkpoint the previous step wrote). This is the behaviour of both backends today; a warm session that
 * keeps one runner per thread replaces it inside a backend without changing the Sandbox seam.
 */
export class PerStepSession implements SandboxSession {
  constructor(
    private readonly runner: OneStepRunner,
    private readonly workspace: Workspace,
  ) {}

  run(request: StepRequest, options: RunOptions = {}): Promise<StepResult> {
    return this.runner.run(this.workspace, request, options);
  }

  async release(): Promise<void> {
    // Nothing is kept between steps.
  }
}
