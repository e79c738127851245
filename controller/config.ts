import { z } from 'zod';
import { ConfigError } from './errors.js';

/**
 * The configuration contract (docs/architecture.md, Configuration; every variable: README.md). Environment variable
 * names are a contract with operators and tests: do not rename. `loadConfig(env)` is pure so tests
 * call it with a plain object; main.ts passes process.env.
 */

const emptyToUndefined = (value: unknown) => (typeof value === 'string' && value.trim() === '' ? undefined : value);

const optionalString = z.preprocess(emptyToUndefined, z.string().optional());
const requiredString = (hint: string) =>
  z.preprocess(
    emptyToUndefined,
    z.string({ error: (issue) => (issue.input === undefined ? `is required: ${hint}` : 'must be text') }),
  );
const integer = (defaultValue: number, min: number, max: number) =>
  z.preprocess(emptyToUndefined, z.coerce.number().int().min(min).max(max).default(defaultValue));
const optionalInteger = (min: number) => z.preprocess(emptyToUndefined, z.coerce.number().int().min(min).optional());
const boolean = (defaultValue: boolean) =>
  z.preprocess(
    emptyToUndefined,
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'], { error: 'must be true or false' })
      .default(defaultValue ? 'true' : 'false')
      .transform((value) => ['true', '1', 'yes', 'on'].includes(value)),
  );
const idList = z.preprocess(
  emptyToUndefined,
  z
    .string()
    .optional()
    .transform((value) =>
      value === undefined ? [] : value.split(/[\s,]+/).map((item) => item.trim()).filter((item) => item !== ''),
    ),
);
/** An http(s) URL: `localhost:4001` (no scheme) parses as a URL with the scheme `localhost:`, so the scheme is checked. */
const url = z.preprocess(
  emptyToUndefined,
  z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL such as http://127.0.0.1:4000/api/' }).optional(),
);

/**
 * SANDBOX_NETWORK (issue 14): `egress` (the internet through a user-mode stack, never the host's network) or `off`.
 * The old booleans stay accepted with a notice: `true` → egress (it used to share the host's network: strictly
 * more), `false` → off.
 */
const NETWORK_VALUES: Record<string, 'egress' | 'off'> = {
  egress: 'egress',
  off: 'off',
  true: 'egress',
  '1': 'egress',
  yes: 'egress',
  on: 'egress',
  false: 'off',
  '0': 'off',
  no: 'off',
};

const envSchema = z.object({
  SLACK_BOT_TOKEN: requiredString('the bot token (xoxb-...) from your Slack app'),
  SLACK_SIGNING_SECRET: optionalString,
  SLACK_APP_TOKEN: optionalString,
  SLACK_API_URL: url,
  PORT: integer(3000, 0, 65535),
  /** `auto`: answers stream into the thread (chat.startStream), falling back where Slack will not; `off`: status message and replies. */
  SLACK_STREAMING: z.preprocess(emptyToUndefined, z.enum(['auto', 'off']).default('auto')),

  OPENAI_API_KEY: requiredString('the API key of the OpenAI (or compatible) server'),
  OPENAI_BASE_URL: url,
  OPENAI_MODEL: z.preprocess(emptyToUndefined, z.string().default('gpt-4.1')),

  STORAGE_BACKEND: z.preprocess(emptyToUndefined, z.enum(['local', 'gcs']).default('local')),
  DATA_DIR: z.preprocess(emptyToUndefined, z.string().default('./data')),
  GCS_BUCKET: optionalString,
  /** Tests and emulators: JSON API endpoint for @google-cloud/storage (no credentials are used). */
  GCS_API_ENDPOINT: url,

  SANDBOX_BACKEND: z.preprocess(emptyToUndefined, z.enum(['local', 'cloudrun']).default('local')),
  SANDBOX_PYTHON: optionalString,
  SANDBOX_NETWORK: z.preprocess(
    (value) => (typeof value === 'string' ? emptyToUndefined(value.toLowerCase()) : value),
    z.enum(Object.keys(NETWORK_VALUES) as [string, ...string[]], { error: 'must be egress or off' }).default('egress'),
  ),
  /** `auto` uses bubblewrap when found; `required` refuses to start without it; `off` never uses it. */
  /** Fails closed (issue 14): `off` only when written; the old `auto` is read as `required`, with a notice. */
  SANDBOX_ISOLATION: z.preprocess(emptyToUndefined, z.enum(['required', 'off', 'auto'], { error: 'must be required or off' }).default('required')),
  /** Warm sessions (issue 13): one live runner per thread; `off` starts one runner per step. */
  SANDBOX_SESSION: boolean(true),
  SANDBOX_SESSION_IDLE_SEC: integer(600, 1, 86_400),
  SANDBOX_MAX_SESSIONS: integer(16, 1, 10_000),
  SANDBOX_WORKSPACE_MAX_MB: integer(2048, 1, 1_048_576 * 16),
  SANDBOX_MEMORY_MB: integer(2048, 64, 1_048_576),
  SANDBOX_CPU_SEC: integer(600, 1, 86_400),
  SANDBOX_MAX_PROCESSES: integer(256, 8, 100_000),
  SANDBOX_MAX_FILE_MB: integer(1024, 1, 1_048_576),
  GCP_PROJECT: optionalString,
  GCP_REGION: optionalString,
  SANDBOX_JOB: optionalString,
  /** Tests and emulators: Cloud Run Admin API endpoint (http://127.0.0.1:PORT); no credentials are used. */
  CLOUD_RUN_API_ENDPOINT: url,

  MAX_STEPS_PER_TURN: integer(20, 1, 200),
  STEP_TIMEOUT_SEC: integer(300, 1, 86_400),
  MAX_CONCURRENT_TURNS: integer(8, 1, 1000),
  MAX_UPLOAD_MB: integer(1024, 1, 1_048_576),
  /** Files shared automatically after a turn; the rest are counted and offered via `download`. */
  MAX_SHARED_FILES_PER_TURN: integer(10, 0, 100),
  /** Approximate tokens of history sent to the model; old tool output is trimmed to fit. */
  CONTEXT_TOKEN_BUDGET: integer(60_000, 2_000, 2_000_000),

  ALLOWED_CHANNELS: idList,
  ALLOWED_USERS: idList,
  ADMIN_USERS: idList,
  TURN_MAX_TOKENS: optionalInteger(1),
  THREAD_MAX_TOKENS: optionalInteger(1),
  TURN_MAX_SANDBOX_SEC: optionalInteger(1),
  THREAD_MAX_SANDBOX_SEC: optionalInteger(1),
  USAGE_FOOTER: boolean(false),
  REPLY_WITHOUT_MENTION: boolean(false),
  RETENTION_DAYS: optionalInteger(1),

  /** Minimum time between two edits of a turn's status message (Slack allows about one edit a second). */
  STATUS_INTERVAL_MS: integer(2000, 0, 60_000),
  /** A thread's lease lasts this long without a renewal (renewed every third of it): how soon a dead instance's turn is told. */
  TURN_LEASE_SEC: integer(20, 2, 600),
  /** How often each instance looks for leases whose holder went away. */
  TURN_SWEEP_SEC: integer(5, 1, 600),

  LOG_LEVEL: z.preprocess(emptyToUndefined, z.enum(['DEBUG', 'INFO', 'WARNING', 'ERROR']).default('INFO')),
});

type Env = z.infer<typeof envSchema>;

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
