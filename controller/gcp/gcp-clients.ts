import { v2 } from '@google-cloud/run';
import { IdempotencyStrategy, Storage } from '@google-cloud/storage';
import { GoogleAuth, Impersonated, PassThroughClient, type AuthClient } from 'google-auth-library';
import { stepLimits, type Config } from '../config.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';
import { CloudRunSandbox } from '../sandbox/cloud-run/cloud-run-sandbox.js';
import { DownscopedTokenMinter, StaticTokenMinter, type TokenMinter } from '../sandbox/cloud-run/downscoped-token.js';
import { DEFAULT_SESSION_TIMING, type SessionTiming } from '../sandbox/cloud-run/live-session.js';
import { GcsWorkspaceStore } from '../workspace/gcs-workspace.js';
import { checkGoogleCloud, type GcpCheckTargets, type StartupFindings } from './startup-checks.js';

/**
 * Builds the Google Cloud clients and backends from Config (called by main.ts, the composition root).
 * Production: Application Default Credentials (the controller's service account on Cloud Run).
 * Emulators and tests: GCS_API_ENDPOINT / CLOUD_RUN_API_ENDPOINT point at local servers, no
 * credentials are used at all, and the sandbox gets EMULATOR_SANDBOX_TOKEN instead of a minted one.
 */

export const EMULATOR_SANDBOX_TOKEN = 'emulator-downscoped-token';
const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const STARTUP_MARGIN_SEC = 120;
/** How runJob's operation is polled for a one-step execution on Cloud Run itself (google-gax backs off between them). */
export const CLOUD_RUN_POLLING = { initialMs: 1000, maxMs: 5000 };
/** Against local emulators a dead execution or a missed stop shows within a second (the real API is read every 5 s). */
const EMULATOR_SESSION_TIMING: Partial<SessionTiming> = { executionCheckMs: 250, stopGraceMs: 3_000, timeoutGraceMs: 3_000 };

export interface GcpClients {
  storage: Storage;
  jobsClient: v2.JobsClient;
  executionsClient: v2.ExecutionsClient;
  tokenMinter: TokenMinter;
  store: GcsWorkspaceStore;
  sandbox: CloudRunSandbox;
  /** What the start-up checks look at (startup-checks.ts). */
  checkTargets: GcpCheckTargets;
}

/**
 * The Storage client: Application Default Credentials in production; a custom endpoint (emulator,
 * tests) is used without credentials. Shared by the bot and the retention command.
 *
 * Retries: `RetryAlways`. Under the library's default (`RetryConditional`) a write or delete without a
 * precondition is not retried on a 429/503, and the library switches `autoRetry` off on this shared client while
 * such a request runs and does not always switch it back, so later requests lose their retries too (verified in
 * test/gcs-workspace.test.ts). Every write here is safe to repeat: a whole-object save writes the same bytes again,
 * a delete ignores "not found", and state writes carry a generation precondition, which a repeat after a lost
 * answer turns into a 412 the caller already handles as a conflict
 * (https://cloud.google.com/storage/docs/retry-strategy#idempotency).
 */
export function createStorage(apiEndpoint: string | undefined, projectId?: string): Storage {
  return new Storage({
    ...(apiEndpoint === undefined ? {} : { apiEndpoint }),
    ...(projectId === undefined ? {} : { projectId }),
    retryOptions: { idempotencyStrategy: IdempotencyStrategy.RetryAlways },
  });
}

/** The settings the Google Cloud backends need: the bot (main.ts) and the post-deploy check (smoke/) share them. */
export type GcpConfig = Pick<Config, 'storage' | 'sandbox' | 'limits'>;

type CloudRunClientOptions = NonNullable<ConstructorParameters<typeof v2.JobsClient>[0]>;

/**
 * One transport for Cloud Run in production and in tests: REST (`fallback: true`), the Admin API v2's JSON over
 * HTTPS (https://cloud.google.com/run/docs/reference/rest), so the requests the fakes check are the requests
 * production sends. Production: run.googleapis.com with Application Default Credentials (google-gax builds a
 * GoogleAuth when no auth client is given). Tests and emulators: only the endpoint differs, and no credentials
 * are used. (The library's default gRPC transport was never exercised by a test.)
 */
export function cloudRunClientOptions(project: string, endpoint: string | undefined): CloudRunClientOptions {
  const common = { projectId: project, fallback: true };
  if (endpoint === undefined) return common;
  const url = new URL(endpoint);
  return {
    ...common,
    apiEndpoint: url.hostname,
    port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
    protocol: url.protocol.replace(':', ''),
    authClient: new PassThroughClient(),
    // google-gax types authClient against its own copy of google-auth-library; the object is the same.
  } as unknown as CloudRunClientOptions;
}

export function createGcpClients(
  config: GcpConfig,
  logger: Logger,
  options: { instrumentJobs?: (jobsClient: v2.JobsClient, executionsClient: v2.ExecutionsClient) => v2.JobsClient } = {},
): GcpClients {
  if (config.storage.backend !== 'gcs' || config.sandbox.backend !== 'cloudrun') {
    throw new ConfigError('Configuration error: STORAGE_BACKEND=gcs and SANDBOX_BACKEND=cloudrun go together');
  }
  const { bucket } = config.storage;
  const { project, region, job, apiEndpoint: runEndpoint } = config.sandbox;

  const storage = createStorage(config.storage.apiEndpoint, project);
  const runOptions = cloudRunClientOptions(project, runEndpoint);
  const jobsClient = new v2.JobsClient(runOptions);
  const executionsClient = new v2.ExecutionsClient(runOptions);

  // A step's token must outlive the step; a session's must outlive the session (about 50 minutes).
  const { session, sessionIdleSec } = config.sandbox;
  const tokenSec = Math.max(config.limits.stepTimeoutSec + STARTUP_MARGIN_SEC, session ? DEFAULT_SESSION_TIMING.tokenLifeSec : 0);
  const tokenMinter: TokenMinter =
    runEndpoint !== undefined
      ? new StaticTokenMinter(EMULATOR_SANDBOX_TOKEN)
      : new DownscopedTokenMinter({ bucket, source: selfImpersonatedSource(tokenSec, logger) });

  const store = new GcsWorkspaceStore({ storage, bucket, logger });
  const sandbox = new CloudRunSandbox({
    // The post-deploy check watches the executions the sandbox starts (smoke/execution-watch.ts); the bot does not.
    jobsClient: options.instrumentJobs?.(jobsClient, executionsClient) ?? jobsClient,
    executionsClient,
    project,
    region,
    job,
    tokenMinter,
    limits: stepLimits(config),
    logger,
    startupMarginSec: STARTUP_MARGIN_SEC,
    // A local emulator answers at once; polling Cloud Run itself every few seconds is plenty.
    polling: runEndpoint !== undefined ? { initialMs: 100, maxMs: 500 } : CLOUD_RUN_POLLING,
    session: session
      ? { idleSec: sessionIdleSec, maxStepSec: config.limits.stepTimeoutSec, timing: runEndpoint !== undefined ? EMULATOR_SESSION_TIMING : {} }
      : undefined,
  });
  const checkTargets: GcpCheckTargets = {
    bucket,
    project,
    region,
    job,
    // config.ts has the two emulator endpoints set together or not at all.
    usesCredentials: runEndpoint === undefined,
    // What CloudRunSandbox asks of a token: a session's life, or a step's task timeout (step + margin) and a minute more.
    tokenValidForSec: Math.max(config.limits.stepTimeoutSec + STARTUP_MARGIN_SEC + 60, session ? DEFAULT_SESSION_TIMING.tokenLifeSec : 0),
  };
  return { storage, jobsClient, executionsClient, tokenMinter, store, sandbox, checkTargets };
}

/** The bot's Google Cloud backends, with what the start-up checks found (main.ts exits on any problem). */
export async function createCheckedGcpBackends(config: GcpConfig, logger: Logger): Promise<Pick<GcpClients, 'store' | 'sandbox'> & StartupFindings> {
  const clients = createGcpClients(config, logger);
  const findings = await checkGoogleCloud(clients.checkTargets, clients);
  return { store: clients.store, sandbox: clients.sandbox, ...findings };
}

/**
 * The token source behind the downscoped tokens. STS gives a downscoped token the remaining life of
 * its source token, and the metadata server may hand out a token with only minutes left; so the
 * controller impersonates its own service account (roles/iam.serviceAccountTokenCreator on itself)
 * for one-hour tokens, refreshed early enough that every token outlives the longest step.
 * Without a service account (a developer's user credentials) the ADC client is used as it is.
 */
function selfImpersonatedSource(tokenSec: number, logger: Logger): () => Promise<AuthClient> {
  let source: Promise<AuthClient> | undefined;
  return () => {
    source ??= (async () => {
      const auth = new GoogleAuth({ scopes: [CLOUD_PLATFORM_SCOPE] });
      const adc = await auth.getClient();
      const { client_email: email } = await auth.getCredentials();
      if (email === undefined || !email.endsWith('.gserviceaccount.com')) {
        logger.warn('no service account found in the default credentials: sandbox tokens live as long as the current token');
        return adc;
      }
      return new Impersonated({
        sourceClient: adc,
        targetPrincipal: email,
        targetScopes: [CLOUD_PLATFORM_SCOPE],
        delegates: [],
        lifetime: 3600,
        // Refresh when less than a token's life (plus two minutes) is left; capped below the one-hour lifetime.
        eagerRefreshThresholdMillis: Math.min(tokenSec + 120, 3300) * 1000,
      });
    })();
    source.catch(() => (source = undefined));
    return source;
  };
}
