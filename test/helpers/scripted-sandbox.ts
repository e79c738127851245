import type { RunOptions, Sandbox, SandboxSession, StepRequest, StepResult } from '../../controller/sandbox/sandbox.js';
import type { Workspace } from '../../controller/workspace/workspace.js';

/**
 * A Sandbox whose steps are answered by a function (which may wait for the abort signal, or write files into
 * the workspace as a step would). It records each session and request, and whether sessions were released.
 */
export class ScriptedSandbox implements Sandbox {
  readonly requests: Array<{ workspace: Workspace; request: StepRequest }> = [];
  sessions = 0;
  released = 0;

  constructor(
    private readonly answer: (request: StepRequest, context: { workspace: Workspace; signal?: AbortSignal }) => Partial<StepResult> | Promise<Partial<StepResult>> = () => ({}),
  ) {}

  session(workspace: Workspace): SandboxSession {
    this.sessions += 1;
    return {
      run: (request, options) => this.run(workspace, request, options),
      release: async () => {
        this.released += 1;
      },
    };
  }

  async close(): Promise<void> {}

  private async run(workspace: Workspace, request: StepRequest, options: RunOptions = {}): Promise<StepResult> {
    this.requests.push({ workspace, request });
    const partial = await this.answer(request, { workspace, ...(options.signal === undefined ? {} : { signal: options.signal }) });
    return { stepId: `scripted-${this.requests.length}`, exitCode: 0, stdout: '', stderr: '', outputTruncated: false, error: null, durationMs: 5, figures: [], files: [], unsaved: [], notes: [], ...partial };
  }
}
