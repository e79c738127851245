/**
 * The job itself, for FakeCloudRun: what `GET /v2/projects/P/locations/R/jobs/J` answers
 * (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs#Job), which permissions the caller
 * holds on it (`:testIamPermissions`, https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs/testIamPermissions),
 * the task template an execution reports (the job's template with the run's overrides merged in), and what the
 * sandbox image's entrypoint writes when `OI_TIMINGS=1` (sandbox-image/entrypoint.sh).
 */

/** What a test may change about the job. */
export interface FakeJobSettings {
  /** The container image (a digest reference, as docs/deploy.md deploys it). */
  image: string;
  /** Environment variables of the job's own template (an operator could have put anything there). */
  env: { name: string; value: string }[];
  /** Permissions the caller holds on the job; testIamPermissions answers the subset of these it asks for. */
  permissions: string[];
}

export function defaultJobSettings(): FakeJobSettings {
  return {
    image: 'us-central1-docker.pkg.dev/test-project/oi/sandbox@sha256:' + 'a'.repeat(64),
    env: [],
    permissions: ['run.jobs.get', 'run.jobs.run', 'run.jobs.runWithOverrides', 'run.executions.get', 'run.executions.cancel'],
  };
}

export function jobResource(name: string, settings: FakeJobSettings, created: Date): Record<string, unknown> {
  return {
    name,
    uid: '00000000-0000-4000-8000-000000000001',
    generation: '1',
    createTime: created.toISOString(),
    updateTime: created.toISOString(),
    creator: 'operator@example.com',
    lastModifier: 'operator@example.com',
    template: {
      taskCount: 1,
      parallelism: 1,
      template: taskTemplate(settings, [], 600),
    },
    observedGeneration: '1',
    reconciling: false,
    etag: '"fake-etag"',
  };
}

/** The TaskTemplate of an execution: the job's container with the run's env overrides merged in by name. */
export function taskTemplate(settings: FakeJobSettings, overrides: { name: string; value: string }[], timeoutSec: number): Record<string, unknown> {
  const env = new Map(settings.env.map((entry) => [entry.name, entry.value]));
  for (const entry of overrides) env.set(entry.name, entry.value);
  return {
    containers: [{ image: settings.image, env: [...env].map(([name, value]) => ({ name, value })), resources: { limits: { cpu: '2', memory: '4Gi' } } }],
    maxRetries: 0,
    timeout: `${timeoutSec}s`,
    serviceAccount: 'oi-sandbox@test-project.iam.gserviceaccount.com',
  };
}

/**
 * What entrypoint.sh with OI_TIMINGS=1 writes as `entrypoint-timings.json` (in `.oi/steps/<step>/`, or a session's
 * `.oi/session/<id>/`) before the runner starts: epoch seconds.
 */
export function entrypointTimingsJson(startedAtMs: number): string {
  const started = startedAtMs / 1000;
  return `{"started": ${started}, "brokerReady": ${started}, "mounted": ${Date.now() / 1000}}\n`;
}
