import { loadConfig } from '../controller/config.js';
import { CLOUD_RUN_POLLING, createGcpClients, EMULATOR_SANDBOX_TOKEN } from '../controller/gcp/gcp-clients.js';
import { silentLogger } from '../controller/logger.js';
import { CloudRunSandbox } from '../controller/sandbox/cloud-run/cloud-run-sandbox.js';
import type { Sandbox, SandboxSession, StepResult } from '../controller/sandbox/sandbox.js';
import type { Workspace } from '../controller/workspace/workspace.js';
import { FakeCloudRun } from '../test/fakes/fake-cloud-run.js';
import { FakeGcs } from '../test/fakes/fake-gcs.js';
import { answerTime, startInProcessBot, stepsModel } from './fixtures.js';
import { median } from './measure.js';
import type { FigureRow } from './report.js';

/**
 * Figure 13 (Cloud Run): a 5-step turn with warm sessions (SANDBOX_SESSION=on) against one execution per step
 * (off), side by side in the same run, through in-process Bots built by createBot() with the real GCS store and
 * the real @google-cloud/run client against the fakes. The fake Cloud Run starts each execution's container
 * `startMs` after runJob (8 s: public measurements of a trivial job), then runs the real relay and runner; the
 * model answers each request `modelMs` after it (2 s). Per-step mode polls runJob's operation as production does
 * (CLOUD_RUN_POLLING: from 1 s, backing off to 5 s); sessions use their production timing (results read every
 * 50-250 ms). The two turns of a repetition run at the same time, each in a new thread (a cold session).
 *   turn         from the mention to the answer in Slack
 *   first step   the session's first step as the turn sees it: from the model's first answer (the step asked for)
 *                to its result; the execution was started at the mention, so only start - model is left to wait
 *   warm step    the session's later steps (median), against per-step mode's later steps
 * Medians over the repetitions. `details.floorRatio`: the best ratio the model's answers and the start allow
 * ((steps + 1) x model + start - model, against the per-step turn measured).
 */

export interface CloudSessionsOptions {
  repetitions: number;
  startMs: number;
  modelMs: number;
}

const STEPS = 5;
const PROJECT = 'bench-project';
const BUCKET = 'oi-bench';

/** Times each step a session runs, in order. */
class TimedSandbox implements Sandbox {
  readonly stepMs: number[] = [];
  constructor(private readonly inner: Sandbox) {}

  session(workspace: Workspace): SandboxSession {
    const session = this.inner.session(workspace);
    return {
      run: async (request, options) => {
        const started = performance.now();
        const result: StepResult = await session.run(request, options);
        if (result.error !== null) throw new Error(`cloud bench step failed: ${result.error.name}: ${result.error.value}`);
        this.stepMs.push(performance.now() - started);
        return result;
      },
      release: () => session.release(),
    };
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export async function cloudSessionsBenchmark(options: CloudSessionsOptions): Promise<{ rows: FigureRow[]; details: unknown }> {
  const gcs = new FakeGcs([BUCKET]);
  const run = new FakeCloudRun({ gcs, project: PROJECT, region: 'r', job: 'j', expectedToken: EMULATOR_SANDBOX_TOKEN });
  const [{ url: gcsUrl }, { url: runUrl }] = await Promise.all([gcs.start(), run.start()]);
  run.startDelayMs = options.startMs;
  const env = { STORAGE_BACKEND: 'gcs', GCS_BUCKET: BUCKET, GCS_API_ENDPOINT: gcsUrl, SANDBOX_BACKEND: 'cloudrun', GCP_PROJECT: PROJECT, GCP_REGION: 'r', SANDBOX_JOB: 'j', CLOUD_RUN_API_ENDPOINT: runUrl };
  const clients = createGcpClients(loadConfig({ SLACK_BOT_TOKEN: 'xoxb-b', SLACK_SIGNING_SECRET: 's', OPENAI_API_KEY: 'sk', ...env }), silentLogger);
  const cloudSandbox = (session: boolean) =>
    new TimedSandbox(
      new CloudRunSandbox({
        ...clients,
        project: PROJECT,
        region: 'r',
        job: 'j',
        limits: { memoryMb: 2048, cpuSec: 600, maxProcesses: 256, maxFileMb: 1024 },
        logger: silentLogger,
        polling: CLOUD_RUN_POLLING,
        ...(session ? { session: { idleSec: 600, maxStepSec: 300 } } : {}),
      }),
    );
  // Steady state, as in a controller that has been up for a while: the clients' first calls load their protos.
  await Promise.all([clients.jobsClient.initialize(), clients.executionsClient.initialize(), clients.store.open({ team: 'T0', channel: 'C0', threadTs: '1.1' }).readState('warm-up')]);
  const samples = { sessionTurn: [] as number[], perStepTurn: [] as number[], firstStep: [] as number[], warmStep: [] as number[], perStepStep: [] as number[] };
  try {
    for (let repetition = 0; repetition < options.repetitions; repetition++) {
      const [session, perStep] = await Promise.all([timeTurn(cloudSandbox(true), clients.store, options), timeTurn(cloudSandbox(false), clients.store, options)]);
      samples.sessionTurn.push(session.turnMs);
      samples.perStepTurn.push(perStep.turnMs);
      samples.firstStep.push(session.stepMs[0]!);
      samples.warmStep.push(median(session.stepMs.slice(1)));
      samples.perStepStep.push(median(perStep.stepMs.slice(1)));
    }
  } finally {
    await run.close();
    await gcs.close();
    await clients.sandbox.close();
  }
  const m = Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)])) as Record<keyof typeof samples, number>;
  // No session turn can be shorter than the model's answers plus the start the first answer does not cover.
  const floorMs = (STEPS + 1) * options.modelMs + (options.startMs - options.modelMs);
  const details = { medianMs: m, samples, startMs: options.startMs, modelMs: options.modelMs, steps: STEPS, runJobCalls: run.runs.length, floorMs, floorRatio: floorMs / m.perStepTurn };
  return { rows: rows(m, options), details };
}

async function timeTurn(sandbox: TimedSandbox, store: Awaited<ReturnType<typeof createGcpClients>>['store'], options: CloudSessionsOptions): Promise<{ turnMs: number; stepMs: number[] }> {
  const harness = await startInProcessBot({ sandbox, store, env: { STATUS_INTERVAL_MS: '2000' } });
  try {
    harness.ai.script((request) => ({ ...stepsModel(request), delayMs: options.modelMs }));
    const { ms, finished } = await answerTime(harness, harness.mention(`run ${STEPS}: print({i})`), 300_000);
    await finished;
    await harness.bot.drain(); // the status message's last edit, before the fake Slack goes away
    if (sandbox.stepMs.length !== STEPS) throw new Error(`cloud bench: ${sandbox.stepMs.length} steps ran, not ${STEPS}`);
    return { turnMs: ms, stepMs: sandbox.stepMs };
  } finally {
    await harness.close();
  }
}

function rows(m: Record<string, number>, options: CloudSessionsOptions): FigureRow[] {
  const figure = '13 Cloud Run sessions';
  const setting = `${options.startMs / 1000} s start, ${options.modelMs / 1000} s model`;
  const firstTargetSec = (options.startMs - options.modelMs + 1000) / 1000;
  return [
    {
      key: 'cloudSessions.turn',
      figure,
      measure: `session: ${STEPS}-step turn s, ${setting}`,
      ours: m.sessionTurn! / 1000,
      baseline: m.perStepTurn! / 1000,
      baselineName: 'execution per step',
      target: '<= 0.25x',
      met: m.sessionTurn! / m.perStepTurn! <= 0.25,
    },
    {
      key: 'cloudSessions.firstStep',
      figure,
      measure: `session: first step's visible start-up s, ${setting}`,
      ours: m.firstStep! / 1000,
      target: `<= ${firstTargetSec} s (start - model + 1 s)`,
      met: m.firstStep! / 1000 <= firstTargetSec,
    },
    {
      key: 'cloudSessions.warmStep',
      figure,
      measure: 'session: warm step ms (steps 2-5)',
      ours: m.warmStep!,
      baseline: m.perStepStep!,
      baselineName: 'execution per step',
    },
  ];
}
