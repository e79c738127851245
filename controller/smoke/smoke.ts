import { randomBytes } from 'node:crypto';
import type { LibraryVersions } from '../agent/libraries.js';
import { describeError } from '../errors.js';
import type { GcpClients } from '../gcp/gcp-clients.js';
import { describeGoogleError, secretLookingVariables } from '../gcp/google-errors.js';
import { checkGoogleCloud } from '../gcp/startup-checks.js';
import type { SandboxSession, StepResult } from '../sandbox/sandbox.js';
import type { ThreadKey } from '../workspace/thread-key.js';
import type { Workspace } from '../workspace/workspace.js';
import { timestampMs, type ExecutionWatch } from './execution-watch.js';
import { sessionStages } from './session-stages.js';
import type { SmokeCheck, SmokeReport, SmokeStage } from './smoke-report.js';
import { parseSmokeStepOutput, smokeStepCode, type SmokeStepReport } from './smoke-step.js';
import { tokenBoundaryChecks } from './token-boundary.js';

/**
 * The post-deploy check (`npm run smoke`, docs/deploy.md step 9): one step through the real job for a scratch
 * thread, each stage timed, the isolation proven, everything it wrote removed; with Cloud Run sessions also a second
 * step in the same execution and the session's end (session-stages.ts). It uses the Sandbox seam as the bot
 * does (`sandbox.session(workspace).run(...)`), so it checks whichever way the backend runs steps; the Cloud Run
 * side is watched through the jobs client (execution-watch.ts). Against the fakes (its tests) the same code runs;
 * what needs Google's real boundary then meets the fakes' model of it (test/fakes/gcs-access.ts).
 */

export interface SmokeParts {
  clients: GcpClients;
  watch: ExecutionWatch;
  /** The libraries the controller tells the model about: the step imports each one. */
  libraries: LibraryVersions;
  /** GCS JSON API base URL (https://storage.googleapis.com, or the emulator's). */
  storageUrl: string;
  /** host[:port] of the metadata server the step asks; undefined when there is none to ask (emulators). */
  metadataHost?: string;
  stepTimeoutSec: number;
  /** Names the scratch threads (tests pass their own); a fresh random one by default. */
  runId?: string;
}

interface StepOutcome {
  result: StepResult;
  report: SmokeStepReport;
  /** performance.now() and Date.now() when the step was asked for, performance.now() when its result was read. */
  startedAt: number;
  startedEpochMs: number;
  resultAt: number;
}

export async function runSmoke(parts: SmokeParts): Promise<SmokeReport> {
  const runId = parts.runId ?? `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const report: SmokeReport = { runId, stages: [], checks: [], warnings: [], cleanup: '' };
  const main: ThreadKey = { team: 'smoke', channel: runId, threadTs: 'main' };
  const other: ThreadKey = { team: 'smoke', channel: runId, threadTs: 'canary' };
  try {
    const preflight = await checkGoogleCloud(parts.clients.checkTargets, parts.clients);
    report.warnings.push(...preflight.warnings);
    const ready = preflight.problems.length === 0;
    report.checks.push({ name: 'start-up checks (credentials, bucket, token chain, job)', outcome: ready ? 'pass' : 'fail', detail: ready ? 'as the bot runs them' : preflight.problems.join(' | ') });
    if (!ready) return report;
    // A file in another scratch thread, which the step's token must not reach.
    const [mainWorkspace, otherWorkspace] = [parts.clients.store.open(main), parts.clients.store.open(other)];
    await otherWorkspace.write('canary.txt', `canary of smoke run ${runId}\n`);
    const session = parts.clients.sandbox.session(mainWorkspace);
    try {
      const outcome = await runStep(parts, session, report);
      if (outcome !== undefined) {
        await judgeStep(parts, outcome, report, { own: prefixOf(mainWorkspace), other: prefixOf(otherWorkspace) });
        const { stages, checks } = await sessionStages({ ...parts, session, workspace: mainWorkspace, firstStepAt: outcome.startedAt });
        report.stages.push(...stages);
        report.checks.push(...checks);
      }
    } finally {
      await session.release().catch((error: unknown) => report.warnings.push(`releasing the session failed: ${describeError(error)}`));
    }
  } catch (error) {
    report.checks.push({ name: 'the smoke run itself', outcome: 'fail', detail: describeError(error).split('\n')[0]! });
  } finally {
    await parts.watch.stop();
    report.cleanup = await cleanUp(parts, runId, report);
  }
  return report;
}

async function runStep(parts: SmokeParts, session: SandboxSession, report: SmokeReport): Promise<StepOutcome | undefined> {
  const code = smokeStepCode({ libraries: parts.libraries, bucket: parts.clients.checkTargets.bucket, metadataHost: parts.metadataHost, storageUrl: parts.storageUrl });
  const startedAt = performance.now();
  const startedEpochMs = Date.now();
  let result: StepResult;
  try {
    result = await session.run({ language: 'python', code, timeoutSec: parts.stepTimeoutSec });
  } catch (error) {
    const refused = parts.watch.runs.find((run) => run.error !== undefined);
    if (refused !== undefined) report.stages.push({ name: 'runJob accepted', detail: `refused: ${describeGoogleError(refused.error)}` });
    report.checks.push({ name: 'one step runs through the job', outcome: 'fail', detail: describeError(error).split('\n')[0]! });
    return undefined;
  }
  const resultAt = performance.now();
  const stepReport = result.error === null ? parseSmokeStepOutput(result.stdout) : `the step raised ${result.error.name}: ${result.error.value}`;
  if (typeof stepReport === 'string') {
    report.checks.push({ name: 'one step runs through the job', outcome: 'fail', detail: `${stepReport} (stderr: ${result.stderr.slice(-300)})` });
    return undefined;
  }
  report.checks.push({ name: 'one step runs through the job', outcome: 'pass', detail: `${parts.watch.runs.length} execution(s) started` });
  return { result, report: stepReport, startedAt, startedEpochMs, resultAt };
}

/** The stages of the step, its own findings, and what Cloud Run and GCS say about its execution and its token. */
/** The thread's prefix in the bucket (`workspaces/<team>/<channel>/<thread>/`), as the store lays it out. */
function prefixOf(workspace: Workspace): string {
  if (workspace.location.kind !== 'gcs') throw new Error('the post-deploy check needs a GCS workspace');
  return workspace.location.prefix;
}

async function judgeStep(parts: SmokeParts, outcome: StepOutcome, report: SmokeReport, prefixes: { own: string; other: string }): Promise<void> {
  const run = parts.watch.runs[0];
  const execution = run?.executionName === undefined ? undefined : await parts.watch.read(run.executionName);
  report.stages.push(...stepStages(outcome, run, execution));
  report.checks.push(...stepChecks(outcome.report, execution?.template?.serviceAccount ?? undefined));
  if (execution === undefined) {
    report.checks.push({ name: "the execution's environment", outcome: 'fail', detail: 'no execution was seen (runJob was never called?)' });
    return;
  }
  const env = execution.template?.containers?.flatMap((container) => container.env ?? []) ?? [];
  const secrets = secretLookingVariables(env);
  report.checks.push({
    name: 'no Slack or OpenAI secret in the execution\'s environment (as Cloud Run reports it)',
    outcome: secrets.length === 0 ? 'pass' : 'fail',
    detail: secrets.length === 0 ? `variables: ${env.map((entry) => entry.name).join(' ')}` : `secret-looking: ${secrets.join(' ')}`,
  });
  const bucket = parts.clients.checkTargets.bucket;
  const readBack = env.find((entry) => entry.name === 'OI_TOKEN')?.value ?? undefined;
  const token = readBack ?? (await parts.clients.tokenMinter.mint(prefixes.own, { validForSec: 300 })).token;
  report.checks.push(
    ...(await tokenBoundaryChecks(token, {
      storageUrl: parts.storageUrl,
      bucket,
      ownPrefix: prefixes.own,
      otherPrefix: prefixes.other,
      canaryObject: `${prefixes.other}canary.txt`,
      tokenSource: readBack === undefined ? "minted like a step's (the execution did not show OI_TOKEN)" : 'read back from the execution',
    })),
  );
}

function stepStages(outcome: StepOutcome, run: ExecutionWatch['runs'][number] | undefined, execution: Awaited<ReturnType<ExecutionWatch['read']>> | undefined): SmokeStage[] {
  const since = (at: number | undefined) => (at === undefined ? undefined : at - outcome.startedAt);
  const fromEpoch = (epochSec: number) => epochSec * 1000 - outcome.startedEpochMs;
  const created = timestampMs(execution?.createTime);
  const started = timestampMs(execution?.startTime);
  const completed = timestampMs(execution?.completionTime);
  const serverSec = (from: number | undefined, to: number | undefined) => (from === undefined || to === undefined ? '?' : ((to - from) / 1000).toFixed(2));
  const formatSince = (ms: number | undefined) => (ms === undefined ? 'never' : `+${(ms / 1000).toFixed(2)} s`);
  const entry = outcome.report.entrypoint;
  const importSec = Object.values(outcome.report.importSec).reduce((sum, value) => sum + value, 0);
  const slowest = Object.entries(outcome.report.importSec).sort((left, right) => right[1] - left[1])[0];
  const importedAt = fromEpoch(outcome.report.codeStartedAt) + importSec * 1000;
  const stages: SmokeStage[] = [
    { name: 'runJob accepted', atMs: since(run?.acceptedAt), tookMs: run?.acceptedAt === undefined ? undefined : run.acceptedAt - run.requestedAt, detail: run?.executionName ?? 'no execution name' },
    {
      // Cloud Run's own times (its clock); polling only tells that it started, at its interval's resolution.
      name: 'execution started',
      atMs: started === undefined ? since(run?.seenStartedAt) : started - outcome.startedEpochMs,
      tookMs: started === undefined || created === undefined ? undefined : started - created,
      detail: `Cloud Run: created → started (scheduling, image pull); seen by polling at ${formatSince(since(run?.seenStartedAt))}`,
    },
    entry === null
      ? { name: 'prefix mounted', detail: 'not recorded (no entrypoint-timings.json: an image without OI_TIMINGS support?)' }
      : {
          name: 'prefix mounted',
          atMs: fromEpoch(entry.mounted),
          tookMs: (entry.mounted - entry.started) * 1000,
          detail: `container start → mounted, token broker ready after ${(entry.brokerReady - entry.started).toFixed(2)} s (sandbox clock)`,
        },
    {
      name: 'libraries imported',
      atMs: importedAt,
      tookMs: importSec * 1000,
      detail: `${Object.keys(outcome.report.importSec).length} imported${slowest === undefined ? '' : `, slowest ${slowest[0]} ${slowest[1].toFixed(2)} s`} (sandbox clock)`,
    },
    { name: 'result read', atMs: since(outcome.resultAt), tookMs: since(outcome.resultAt)! - importedAt, detail: `Cloud Run: created → completed ${serverSec(created, completed)} s` },
  ];
  return stages;
}

function stepChecks(step: SmokeStepReport, jobAccount: string | undefined): SmokeCheck[] {
  const failed = Object.entries(step.failed);
  const checks: SmokeCheck[] = [
    {
      name: 'every library the model is told about imports',
      outcome: failed.length === 0 ? 'pass' : 'fail',
      detail: failed.length === 0 ? `${Object.keys(step.importSec).length} of ${Object.keys(step.importSec).length}` : failed.map(([name, why]) => `${name} (${why})`).join('; '),
    },
    {
      name: "no Slack or OpenAI secret in the step's environment",
      outcome: step.secretLooking.length === 0 ? 'pass' : 'fail',
      detail: step.secretLooking.length === 0 ? `variables: ${step.environment.join(' ')}` : `secret-looking: ${step.secretLooking.join(' ')}`,
    },
  ];
  const name = "the metadata server's account has no roles on the bucket";
  if (step.metadata === undefined) checks.push({ name, outcome: 'skip', detail: 'no metadata server to ask (emulator without GCE_METADATA_HOST)' });
  else if ('error' in step.metadata) checks.push({ name, outcome: 'fail', detail: `the step could not ask: ${step.metadata.error}` });
  else {
    const { email, held } = step.metadata;
    const wrongAccount = jobAccount !== undefined && jobAccount !== '' && email !== jobAccount;
    checks.push({
      name,
      outcome: held.length === 0 && !wrongAccount ? 'pass' : 'fail',
      detail: `${email} holds ${held.length === 0 ? 'nothing' : held.join(', ')}${wrongAccount ? `; the job's account is ${jobAccount}` : ''}`,
    });
  }
  return checks;
}

/**
 * Removes both scratch threads, files and any history (the layout of docs/architecture.md, Storage layout: both
 * live under `workspaces/smoke/<run>/` and `threads/smoke/<run>/`); a leftover is a failed check. Executions stay in
 * the job's history (the controller may not delete them).
 */
async function cleanUp(parts: SmokeParts, runId: string, report: SmokeReport): Promise<string> {
  const bucket = parts.clients.storage.bucket(parts.clients.checkTargets.bucket);
  const prefixes = [`workspaces/smoke/${runId}/`, `threads/smoke/${runId}/`];
  let removed = 0;
  try {
    for (const prefix of prefixes) {
      const [files] = await bucket.getFiles({ prefix });
      for (const file of files) await file.delete({ ignoreNotFound: true });
      removed += files.length;
      const [left] = await bucket.getFiles({ prefix, maxResults: 1 });
      if (left.length > 0) throw new Error(`objects are left under ${prefix}`);
    }
  } catch (error) {
    report.checks.push({ name: 'cleanup', outcome: 'fail', detail: describeError(error) });
    return `incomplete: ${describeError(error)}`;
  }
  return `removed ${removed} objects under ${prefixes.join(' and ')} (executions stay in the job's history)`;
}
