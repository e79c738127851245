import { describeError } from '../errors.js';
import type { GcpClients } from '../gcp/gcp-clients.js';
import type { SandboxSession } from '../sandbox/sandbox.js';
import type { Workspace } from '../workspace/workspace.js';
import type { ExecutionWatch } from './execution-watch.js';
import type { SmokeCheck, SmokeStage } from './smoke-report.js';

/**
 * What the post-deploy check proves of a Cloud Run session (issue 13, `SANDBOX_SESSION=on`; docs/architecture.md,
 * "Cloud Run sessions"): after the first step, a second one goes through the same execution's mailbox ("warm
 * step", no new runJob), and the session ends when asked, so the check leaves nothing running. With one execution
 * per step (`SANDBOX_SESSION=off`) there is nothing more to show.
 */

export interface SessionStageParts {
  clients: GcpClients;
  watch: ExecutionWatch;
  session: SandboxSession;
  workspace: Workspace;
  /** performance.now() when the first step was asked for: stage times count from there. */
  firstStepAt: number;
}

export async function sessionStages(parts: SessionStageParts): Promise<{ stages: SmokeStage[]; checks: SmokeCheck[] }> {
  const first = parts.watch.runs[0]?.executionName;
  const execution = first === undefined ? undefined : await parts.watch.read(first);
  const env = execution?.template?.containers?.flatMap((container) => container.env ?? []) ?? [];
  if (!env.some((entry) => entry.name === 'OI_SESSION_ID')) return { stages: [], checks: [] };
  const stages: SmokeStage[] = [];
  const checks: SmokeCheck[] = [];
  const runsBefore = parts.watch.runs.length;
  const warmAt = performance.now();
  let warm: string;
  try {
    const result = await parts.session.run({ language: 'python', code: "print('warm')", timeoutSec: 60 });
    warm = result.error === null && result.stdout === 'warm\n' ? 'ok' : `the step ended with ${result.error?.name ?? JSON.stringify(result.stdout)}`;
  } catch (error) {
    warm = describeError(error).split('\n')[0]!;
  }
  const warmDone = performance.now();
  const sameExecution = parts.watch.runs.length === runsBefore;
  stages.push({ name: 'warm step', atMs: warmDone - parts.firstStepAt, tookMs: warmDone - warmAt, detail: 'request written → result read, through the mailbox' });
  checks.push({
    name: "a second step runs in the session's execution",
    outcome: warm === 'ok' && sameExecution ? 'pass' : 'fail',
    detail: warm !== 'ok' ? warm : sameExecution ? `${first} took it` : `${parts.watch.runs.length - runsBefore} more execution(s) started`,
  });
  const ended = await parts.clients.sandbox.endSession(parts.workspace).catch((error: unknown) => describeError(error));
  const endDone = performance.now();
  const status = typeof ended === 'string' ? ended : (ended?.status ?? 'no live session');
  stages.push({ name: 'session ended', atMs: endDone - parts.firstStepAt, tookMs: endDone - warmDone, detail: `exit request → execution ${status}` });
  checks.push({ name: 'the session ends when asked', outcome: status === 'succeeded' ? 'pass' : 'fail', detail: `execution ${status}` });
  return { stages, checks };
}
