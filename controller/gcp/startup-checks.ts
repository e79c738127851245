import type { protos, v2 } from '@google-cloud/run';
import type { Storage } from '@google-cloud/storage';
import { GoogleAuth } from 'google-auth-library';
import type { TokenMinter } from '../sandbox/cloud-run/downscoped-token.js';
import { describeGoogleError, errorCode, retryTransient, secretLookingVariables } from './google-errors.js';

/**
 * What the Cloud Run backend needs, checked at start-up so that a wrong setting stops the bot with one line naming
 * what to fix, instead of failing the first user's first step. In order: Google credentials (nothing else can work
 * without them); then, at the same time, the bucket, one downscoped token (the token chain every step uses) and
 * the job with the controller's permissions on it. Each problem is one line; warnings do not stop the bot.
 * The roles named are those of docs/deploy.md, step 2 and 6.
 */

export interface StartupFindings {
  problems: string[];
  warnings: string[];
}

export interface GcpCheckTargets {
  bucket: string;
  project: string;
  region: string;
  job: string;
  /** False when both Google endpoints are emulators (tests): no credentials are used then. */
  usesCredentials: boolean;
  /** Seconds a step's token must stay valid (the task timeout plus a minute, as CloudRunSandbox asks). */
  tokenValidForSec: number;
}

export interface GcpCheckClients {
  storage: Storage;
  jobsClient: v2.JobsClient;
  tokenMinter: TokenMinter;
}

const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
/** What the controller calls on the job (the oiSandboxRunner role: https://cloud.google.com/run/docs/reference/iam/permissions). */
const JOB_PERMISSIONS = ['run.jobs.get', 'run.jobs.run', 'run.jobs.runWithOverrides', 'run.executions.get', 'run.executions.cancel'];
/** A prefix of the thread shape that no Slack thread can have: minting a token for it touches no object. */
const TOKEN_CHECK_PREFIX = 'workspaces/startup-check/controller/0/';

export async function checkGoogleCloud(targets: GcpCheckTargets, clients: GcpCheckClients): Promise<StartupFindings> {
  const findings: StartupFindings = { problems: [], warnings: [] };
  if (targets.usesCredentials) {
    const problem = await credentialsProblem();
    if (problem !== undefined) return { problems: [problem], warnings: [] };
  }
  const results = await Promise.all([
    bucketProblem(targets, clients.storage),
    tokenProblem(targets, clients.tokenMinter),
    jobFindings(targets, clients.jobsClient),
  ]);
  for (const result of results) {
    if (typeof result === 'string') findings.problems.push(result);
    else if (result !== undefined) {
      findings.problems.push(...result.problems);
      findings.warnings.push(...result.warnings);
    }
  }
  return findings;
}

/**
 * Application Default Credentials (https://cloud.google.com/docs/authentication/application-default-credentials):
 * finding them is not enough, the source must also hand out a token (the metadata server on Cloud Run).
 */
async function credentialsProblem(): Promise<string | undefined> {
  try {
    const auth = new GoogleAuth({ scopes: [CLOUD_PLATFORM_SCOPE] });
    await auth.getClient();
    await auth.getAccessToken();
    return undefined;
  } catch (error) {
    return (
      'Configuration error: no Google credentials for SANDBOX_BACKEND=cloudrun (Application Default Credentials: ' +
      `${describeGoogleError(error)}): on Cloud Run deploy the service with --service-account (docs/deploy.md, step 7); ` +
      'elsewhere run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS'
    );
  }
}

async function bucketProblem(targets: GcpCheckTargets, storage: Storage): Promise<string | undefined> {
  try {
    await storage.bucket(targets.bucket).getMetadata();
    return undefined;
  } catch (error) {
    const status = errorCode(error);
    const why =
      status === 404
        ? 'it does not exist'
        : status === 403 || status === 401
          ? "the controller's service account may not read it: give it roles/storage.objectAdmin and roles/storage.bucketViewer on the bucket (docs/deploy.md, step 2)"
          : 'GCS did not answer';
    return `Configuration error: GCS_BUCKET: cannot read bucket ${targets.bucket} (${describeGoogleError(error)}): ${why}`;
  }
}

/** One token for a scratch prefix, exactly as every step gets its own (iamcredentials, then STS). */
async function tokenProblem(targets: GcpCheckTargets, minter: TokenMinter): Promise<string | undefined> {
  try {
    await minter.mint(TOKEN_CHECK_PREFIX, { validForSec: targets.tokenValidForSec });
    return undefined;
  } catch (error) {
    const cause = error instanceof Error && error.cause !== undefined ? `: ${describeGoogleError(error.cause)}` : '';
    return (
      `Configuration error: cannot mint the sandbox's downscoped storage token (${describeGoogleError(error)}${cause}): ` +
      'enable iam, iamcredentials and sts.googleapis.com (docs/deploy.md, step 0) and give the controller\'s service ' +
      'account roles/iam.serviceAccountTokenCreator on itself (step 2); a token that expires too soon means STEP_TIMEOUT_SEC is too long'
    );
  }
}

async function jobFindings(targets: GcpCheckTargets, jobsClient: v2.JobsClient): Promise<StartupFindings> {
  const name = `projects/${targets.project}/locations/${targets.region}/jobs/${targets.job}`;
  let job: protos.google.cloud.run.v2.IJob;
  try {
    [job] = await retryTransient(() => jobsClient.getJob({ name }));
  } catch (error) {
    // Google answers 403 for a resource the caller may not read whether or not it exists, so 5 and 7 read alike.
    const code = errorCode(error);
    const hint =
      code === 5 || code === 7
        ? "check GCP_PROJECT, GCP_REGION and SANDBOX_JOB, and that the controller's service account has the oiSandboxRunner role on the job (docs/deploy.md, steps 2 and 6)"
        : code === 16
          ? "Google refused the controller's credentials"
          : 'the Cloud Run Admin API did not answer as expected (is run.googleapis.com enabled? docs/deploy.md, step 0)';
    return { problems: [`Configuration error: SANDBOX_JOB: cannot read Cloud Run job ${name} (${describeGoogleError(error)}): ${hint}`], warnings: [] };
  }
  const findings: StartupFindings = { problems: [], warnings: [] };
  const missing = await missingJobPermissions(jobsClient, name);
  if (typeof missing === 'string') findings.warnings.push(missing);
  else {
    // Without run.jobs.* no step can start: a problem. run.executions.* are checked on the job, their parent; should
    // Google not count them there, stopping the bot would be a false alarm, so they are a warning (step 9 proves them).
    const [fatal, doubtful] = [missing.filter((permission) => permission.startsWith('run.jobs.')), missing.filter((permission) => !permission.startsWith('run.jobs.'))];
    const lacks = (permissions: string[]) =>
      `the controller's service account lacks ${permissions.join(', ')} on Cloud Run job ${targets.job}: bind the oiSandboxRunner role on the job (docs/deploy.md, steps 2 and 6)`;
    if (fatal.length > 0) findings.problems.push(`Configuration error: SANDBOX_JOB: ${lacks(fatal)}`);
    if (doubtful.length > 0) findings.warnings.push(lacks(doubtful));
  }
  const container = job.template?.template?.containers?.[0];
  const secrets = secretLookingVariables(container?.env ?? []);
  if (secrets.length > 0) {
    findings.problems.push(
      `Configuration error: SANDBOX_JOB: the sandbox job's own environment carries ${secrets.join(', ')}: remove them ` +
        '(gcloud run jobs update --remove-env-vars); the sandbox must never see a Slack or OpenAI secret',
    );
  }
  const image = container?.image ?? '';
  if (!image.includes('@sha256:')) {
    findings.warnings.push(
      `Cloud Run job ${targets.job} runs its image by tag (${image || 'none'}): Cloud Run resolves a tag at every execution, ` +
        'so a push under that tag changes the next step; deploy it by digest (docs/deploy.md, step 6)',
    );
  }
  return findings;
}

/** The permissions of JOB_PERMISSIONS the caller does not hold, or why that could not be told. */
async function missingJobPermissions(jobsClient: v2.JobsClient, name: string): Promise<string[] | string> {
  try {
    const [response] = await retryTransient(() => jobsClient.testIamPermissions({ resource: name, permissions: JOB_PERMISSIONS }));
    const held = new Set(response.permissions ?? []);
    return JOB_PERMISSIONS.filter((permission) => !held.has(permission));
  } catch (error) {
    return `could not test the controller's permissions on the Cloud Run job (${describeGoogleError(error)})`;
  }
}
