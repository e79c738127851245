import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import { loadConfig, type Config } from '../../controller/config.js';
import { createGcpClients, EMULATOR_SANDBOX_TOKEN, type GcpClients } from '../../controller/gcp/gcp-clients.js';
import { silentLogger, type Logger } from '../../controller/logger.js';
import { CloudRunSandbox, type CloudRunSandboxOptions } from '../../controller/sandbox/cloud-run/cloud-run-sandbox.js';
import type { SessionTiming } from '../../controller/sandbox/cloud-run/live-session.js';
import type { StepResult } from '../../controller/sandbox/sandbox.js';
import { FakeCloudRun } from '../fakes/fake-cloud-run.js';
import { FakeGcs } from '../fakes/fake-gcs.js';

/**
 * Fake GCS and fake Cloud Run on 127.0.0.1 with the real clients built by createGcpClients, and CloudRunSandboxes
 * in session mode on them with timings small enough for tests (each test may build several: a second one plays a
 * restarted controller or another instance).
 */

export const BUCKET = 'oi-sessions';
export const PROJECT = 'test-project';
export const REGION = 'us-central1';
export const JOB = 'oi-sandbox';

/** Small timings: a dead execution shows within 200 ms, a missed stop within 2 s; no turn reserve. */
export const TEST_TIMING: Partial<SessionTiming> = {
  executionCheckMs: 200,
  stopGraceMs: 2_000,
  timeoutGraceMs: 1_000,
  startTimeoutMs: 30_000,
  endMarginSec: 1,
  stepReserveSec: 1,
  turnReserveSec: 0,
  idleMarginSec: 1,
};

export interface SessionFakes {
  gcs: FakeGcs;
  run: FakeCloudRun;
  clients: GcpClients;
  sandbox: (options?: { idleSec?: number; timing?: Partial<SessionTiming>; tokenMinter?: CloudRunSandboxOptions['tokenMinter']; logger?: Logger }) => CloudRunSandbox;
  close: () => Promise<void>;
}

/** The controller's configuration for the fake GCS and Cloud Run (BUCKET, PROJECT, REGION, JOB). */
export function fakeCloudConfig(gcsUrl: string, runUrl: string): Config {
  return loadConfig({
    SLACK_BOT_TOKEN: 'xoxb-test',
    SLACK_SIGNING_SECRET: 'secret',
    OPENAI_API_KEY: 'sk-test',
    STORAGE_BACKEND: 'gcs',
    GCS_BUCKET: BUCKET,
    GCS_API_ENDPOINT: gcsUrl,
    SANDBOX_BACKEND: 'cloudrun',
    GCP_PROJECT: PROJECT,
    GCP_REGION: REGION,
    SANDBOX_JOB: JOB,
    CLOUD_RUN_API_ENDPOINT: runUrl,
  });
}

export async function startSessionFakes(): Promise<SessionFakes> {
  const gcs = new FakeGcs([BUCKET]);
  const run = new FakeCloudRun({ gcs, project: PROJECT, region: REGION, job: JOB, expectedToken: EMULATOR_SANDBOX_TOKEN });
  const [{ url: gcsUrl }, { url: runUrl }] = await Promise.all([gcs.start(), run.start()]);
  const clients = createGcpClients(fakeCloudConfig(gcsUrl, runUrl), silentLogger);
  return {
    gcs,
    run,
    clients,
    sandbox: (options = {}) =>
      new CloudRunSandbox({
        jobsClient: clients.jobsClient,
        executionsClient: clients.executionsClient,
        project: PROJECT,
        region: REGION,
        job: JOB,
        tokenMinter: options.tokenMinter ?? clients.tokenMinter,
        limits: { memoryMb: 1024, cpuSec: 60, maxProcesses: 64, maxFileMb: 64 },
        logger: options.logger ?? silentLogger,
        session: { idleSec: options.idleSec ?? 600, maxStepSec: 60, timing: { ...TEST_TIMING, ...options.timing } },
      }),
    close: async () => {
      await clients.sandbox.close();
      await Promise.all([gcs.close(), run.close()]);
    },
  };
}

/** A step's result with the runner's output shown when it failed (for expect messages). */
/**
 * One file's fakes, registered as that file's hooks: started once, put back to normal mode with no start delay
 * before each test, and at the end closed and checked for anything the fakes did not expect or refused.
 */
export function useSessionFakes(onStarted: (fakes: SessionFakes) => void): void {
  let fakes: SessionFakes | undefined;
  beforeAll(async () => {
    fakes = await startSessionFakes();
    onStarted(fakes);
  });
  afterAll(async () => {
    if (fakes === undefined) return;
    await fakes.close();
    expect(fakes.gcs.unexpected).toStrictEqual([]);
    expect(fakes.run.unexpected).toStrictEqual([]);
    expect(fakes.run.violations).toStrictEqual([]);
  });
  beforeEach(() => {
    if (fakes === undefined) return;
    fakes.run.mode = 'normal';
    fakes.run.startDelayMs = 0;
  });
}

export function describeResult(result: StepResult, run: FakeCloudRun): string {
  return `${JSON.stringify(result.error)}\n${result.stdout}\n${result.stderr}\n${run.lastRunnerOutput.slice(-3000)}`;
}
