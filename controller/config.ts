import { z } from 'zod';
import { envSchema, NETWORK_VALUES, type Env } from './config-schema.js';
import { ConfigError } from './errors.js';

/**
 * The configuration contract (docs/architecture.md, Configuration; every variable: README.md). Environment variable
 * names are a contract with operators and tests: do not rename. `loadConfig(env)` is pure so tests
 * call it with a plain object; main.ts passes process.env.
 */


export interface Config {
  slack: { botToken: string; signingSecret?: string; appToken?: string; apiUrl?: string; port: number; streaming: 'auto' | 'off' };
  openai: { apiKey: string; baseUrl?: string; model: string };
  storage:
    | { backend: 'local'; dataDir: string }
    | { backend: 'gcs'; bucket: string; apiEndpoint?: string };
  sandbox:
    | {
        backend: 'local';
        python?: string;
        network: 'egress' | 'off';
        isolation: 'required' | 'off';
        /** SANDBOX_SESSION: false = one runner per step. */
        session: boolean;
        sessionIdleSec: number;
        maxSessions: number;
      }
    | {
        backend: 'cloudrun';
        project: string;
        region: string;
        job: string;
        apiEndpoint?: string;
        /** SANDBOX_SESSION: false = one job execution per step. */
        session: boolean;
        sessionIdleSec: number;
      };
  limits: {
    memoryMb: number;
    cpuSec: number;
    maxProcesses: number;
    maxFileMb: number;
    /** SANDBOX_WORKSPACE_MAX_MB: what one thread's workspace may hold. */
    workspaceMaxMb: number;
    maxStepsPerTurn: number;
    stepTimeoutSec: number;
    maxConcurrentTurns: number;
    maxUploadMb: number;
    maxSharedFilesPerTurn: number;
    contextTokenBudget: number;
  };
  access: { allowedChannels: string[]; allowedUsers: string[]; adminUsers: string[] };
  budgets: {
    turnMaxTokens?: number;
    threadMaxTokens?: number;
    turnMaxSandboxSec?: number;
    threadMaxSandboxSec?: number;
    usageFooter: boolean;
  };
  replyWithoutMention: boolean;
  retentionDays?: number;
  statusIntervalMs: number;
  /** Several instances on one store (issue 15): the thread lease's duration and the sweep's interval. */
  coordination: { leaseMs: number; sweepMs: number };
  logLevel: Env['LOG_LEVEL'];
  /** Deprecated values that were accepted, one sentence each, for the start-up log. */
  notices: string[];
}

/** The per-step resource limits both sandboxes apply (SANDBOX_MEMORY_MB, _CPU_SEC, _MAX_PROCESSES, _MAX_FILE_MB). */
export function stepLimits(config: Pick<Config, 'limits'>): { memoryMb: number; cpuSec: number; maxProcesses: number; maxFileMb: number } {
  const { memoryMb, cpuSec, maxProcesses, maxFileMb } = config.limits;
  return { memoryMb, cpuSec, maxProcesses, maxFileMb };
}

/** One line per problem, each naming its variable: a newcomer fixes them all in one go. */
function throwProblems(problems: string[]): void {
  if (problems.length > 0) throw new ConfigError(problems.map((problem) => `Configuration error: ${problem}`).join('\n'));
}

function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const variable = String(issue.path[0] ?? 'environment');
    return issue.message.startsWith('is required') ? `${variable} ${issue.message}` : `${variable} is invalid: ${issue.message}`;
  });
}

/** Raw text of a variable as the schema sees it (blank = unset). */
function raw(env: Record<string, string | undefined>, name: keyof Env): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

/** The bucket names GCS accepts, as the sandbox's entrypoint checks them (https://cloud.google.com/storage/docs/buckets#naming). */
const BUCKET_NAME = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

/** Checks that involve several variables; run on the raw values so they are reported beside the schema's. */
function storageProblems(env: Record<string, string | undefined>): string[] {
  if (raw(env, 'STORAGE_BACKEND') !== 'gcs') return [];
  const bucket = raw(env, 'GCS_BUCKET');
  if (bucket === undefined) return ['GCS_BUCKET is required when STORAGE_BACKEND=gcs'];
  if (!BUCKET_NAME.test(bucket)) return ['GCS_BUCKET is invalid: a bucket name of lowercase letters, digits, - _ and . (without gs://), such as my-project-oi-workspaces'];
  return [];
}

/** SANDBOX_BACKEND=cloudrun: the job, and emulator endpoints that come in pairs (an emulated job gets a fixed token, which only an emulated bucket accepts). */
function cloudRunProblems(env: Record<string, string | undefined>, storage: string): string[] {
  const problems: string[] = [];
  if (storage !== 'gcs') problems.push('SANDBOX_BACKEND is cloudrun, which needs STORAGE_BACKEND=gcs (the job reads the thread from GCS)');
  for (const name of ['GCP_PROJECT', 'GCP_REGION', 'SANDBOX_JOB'] as const) {
    if (raw(env, name) === undefined) problems.push(`${name} is required when SANDBOX_BACKEND=cloudrun`);
  }
  if ((raw(env, 'CLOUD_RUN_API_ENDPOINT') === undefined) !== (raw(env, 'GCS_API_ENDPOINT') === undefined)) {
    problems.push('CLOUD_RUN_API_ENDPOINT and GCS_API_ENDPOINT go together (emulators and tests): set both or neither');
  }
  return problems;
}

function crossFieldProblems(env: Record<string, string | undefined>): string[] {
  return [...slackProblems(env), ...backendProblems(env)];
}

function slackProblems(env: Record<string, string | undefined>): string[] {
  const problems: string[] = [];
  const botToken = raw(env, 'SLACK_BOT_TOKEN');
  const appToken = raw(env, 'SLACK_APP_TOKEN');
  if (botToken !== undefined && !botToken.startsWith('xoxb-')) {
    problems.push('SLACK_BOT_TOKEN must be a bot token starting with xoxb- (OAuth & Permissions → Bot User OAuth Token)');
  }
  if (appToken === undefined && raw(env, 'SLACK_SIGNING_SECRET') === undefined) {
    problems.push('SLACK_SIGNING_SECRET is required in HTTP mode (or set SLACK_APP_TOKEN to use Socket Mode)');
  }
  if (appToken !== undefined && !appToken.startsWith('xapp-')) problems.push('SLACK_APP_TOKEN must be an app-level token starting with xapp-');
  return problems;
}

function backendProblems(env: Record<string, string | undefined>): string[] {
  const storage = raw(env, 'STORAGE_BACKEND') ?? 'local';
  const problems = storageProblems(env);
  if (raw(env, 'SANDBOX_BACKEND') === 'cloudrun') problems.push(...cloudRunProblems(env, storage));
  else if (storage === 'gcs') problems.push('SANDBOX_BACKEND is local, which needs STORAGE_BACKEND=local (use SANDBOX_BACKEND=cloudrun with gcs)');
  return problems;
}

function storageFromEnv(e: Pick<Env, 'STORAGE_BACKEND' | 'DATA_DIR' | 'GCS_BUCKET' | 'GCS_API_ENDPOINT'>): Config['storage'] {
  if (e.STORAGE_BACKEND === 'gcs') return { backend: 'gcs', bucket: e.GCS_BUCKET!, apiEndpoint: e.GCS_API_ENDPOINT };
  return { backend: 'local', dataDir: e.DATA_DIR };
}

const storageEnvSchema = envSchema.pick({
  STORAGE_BACKEND: true,
  DATA_DIR: true,
  GCS_BUCKET: true,
  GCS_API_ENDPOINT: true,
  RETENTION_DAYS: true,
  LOG_LEVEL: true,
});

/**
 * Only the storage settings (plus retention and log level), for tools such as `npm run retention`
 * that touch workspaces but never Slack or the model: they must not need those secrets.
 */
export function loadStorageConfig(
  env: Record<string, string | undefined>,
): Pick<Config, 'storage' | 'retentionDays' | 'logLevel'> {
  const parsed = storageEnvSchema.safeParse(env);
  throwProblems([...(parsed.success ? [] : describeIssues(parsed.error)), ...storageProblems(env)]);
  const e = parsed.data!;
  return { storage: storageFromEnv(e), retentionDays: e.RETENTION_DAYS, logLevel: e.LOG_LEVEL };
}

/** The backends without Slack or the model: the post-deploy check (`npm run smoke`) runs with no Slack or OpenAI secret. */
const backendEnvSchema = envSchema.omit({ SLACK_BOT_TOKEN: true, SLACK_SIGNING_SECRET: true, SLACK_APP_TOKEN: true, OPENAI_API_KEY: true });

export function loadBackendConfig(env: Record<string, string | undefined>): Pick<Config, 'storage' | 'sandbox' | 'limits' | 'logLevel'> {
  const parsed = backendEnvSchema.safeParse(env);
  throwProblems([...(parsed.success ? [] : describeIssues(parsed.error)), ...backendProblems(env)]);
  const e = parsed.data!;
  return { storage: storageFromEnv(e), sandbox: sandboxFromEnv(e), limits: limitsFromEnv(e), logLevel: e.LOG_LEVEL };
}

type BackendEnv = z.infer<typeof backendEnvSchema>;

function sandboxFromEnv(e: BackendEnv): Config['sandbox'] {
  return e.SANDBOX_BACKEND === 'cloudrun'
    ? {
        backend: 'cloudrun',
        project: e.GCP_PROJECT!,
        region: e.GCP_REGION!,
        job: e.SANDBOX_JOB!,
        apiEndpoint: e.CLOUD_RUN_API_ENDPOINT,
        session: e.SANDBOX_SESSION,
        sessionIdleSec: e.SANDBOX_SESSION_IDLE_SEC,
      }
    : {
        backend: 'local',
        python: e.SANDBOX_PYTHON,
        network: NETWORK_VALUES[e.SANDBOX_NETWORK]!,
        isolation: e.SANDBOX_ISOLATION === 'off' ? 'off' : 'required',
        session: e.SANDBOX_SESSION,
        sessionIdleSec: e.SANDBOX_SESSION_IDLE_SEC,
        maxSessions: e.SANDBOX_MAX_SESSIONS,
      };
}

function limitsFromEnv(e: BackendEnv): Config['limits'] {
  return {
    memoryMb: e.SANDBOX_MEMORY_MB,
    cpuSec: e.SANDBOX_CPU_SEC,
    maxProcesses: e.SANDBOX_MAX_PROCESSES,
    maxFileMb: e.SANDBOX_MAX_FILE_MB,
    workspaceMaxMb: e.SANDBOX_WORKSPACE_MAX_MB,
    maxStepsPerTurn: e.MAX_STEPS_PER_TURN,
    stepTimeoutSec: e.STEP_TIMEOUT_SEC,
    maxConcurrentTurns: e.MAX_CONCURRENT_TURNS,
    maxUploadMb: e.MAX_UPLOAD_MB,
    maxSharedFilesPerTurn: e.MAX_SHARED_FILES_PER_TURN,
    contextTokenBudget: e.CONTEXT_TOKEN_BUDGET,
  };
}

export function loadConfig(env: Record<string, string | undefined>): Config {
  const parsed = envSchema.safeParse(env);
  throwProblems([...(parsed.success ? [] : describeIssues(parsed.error)), ...crossFieldProblems(env)]);
  const e = parsed.data!;
  return {
    slack: {
      botToken: e.SLACK_BOT_TOKEN,
      signingSecret: e.SLACK_SIGNING_SECRET,
      appToken: e.SLACK_APP_TOKEN,
      apiUrl: e.SLACK_API_URL,
      port: e.PORT,
      streaming: e.SLACK_STREAMING,
    },
    openai: { apiKey: e.OPENAI_API_KEY, baseUrl: e.OPENAI_BASE_URL, model: e.OPENAI_MODEL },
    storage: storageFromEnv(e),
    sandbox: sandboxFromEnv(e),
    limits: limitsFromEnv(e),
    access: { allowedChannels: e.ALLOWED_CHANNELS, allowedUsers: e.ALLOWED_USERS, adminUsers: e.ADMIN_USERS },
    budgets: {
      turnMaxTokens: e.TURN_MAX_TOKENS,
      threadMaxTokens: e.THREAD_MAX_TOKENS,
      turnMaxSandboxSec: e.TURN_MAX_SANDBOX_SEC,
      threadMaxSandboxSec: e.THREAD_MAX_SANDBOX_SEC,
      usageFooter: e.USAGE_FOOTER,
    },
    replyWithoutMention: e.REPLY_WITHOUT_MENTION,
    retentionDays: e.RETENTION_DAYS,
    statusIntervalMs: e.STATUS_INTERVAL_MS,
    coordination: { leaseMs: e.TURN_LEASE_SEC * 1000, sweepMs: e.TURN_SWEEP_SEC * 1000 },
    logLevel: e.LOG_LEVEL,
    notices: deprecationNotices(e),
  };
}

function deprecationNotices(e: Pick<Env, 'SANDBOX_NETWORK' | 'SANDBOX_ISOLATION'>): string[] {
  const notices: string[] = [];
  if (!['egress', 'off'].includes(e.SANDBOX_NETWORK)) {
    notices.push(
      `SANDBOX_NETWORK=${e.SANDBOX_NETWORK} is deprecated: it now means ${NETWORK_VALUES[e.SANDBOX_NETWORK]} ` +
        "(egress: the internet only, never the host's network); write egress or off",
    );
  }
  if (e.SANDBOX_ISOLATION === 'auto') {
    notices.push('SANDBOX_ISOLATION=auto is deprecated and now means required (steps never run unjailed by accident); write required, or off explicitly');
  }
  return notices;
}
