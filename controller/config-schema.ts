import { z } from 'zod';

/**
 * The environment's schema: every variable the controller reads, its type, default and bounds (README.md,
 * Configuration, says what each one does). config.ts turns the parsed values into the Config the program uses
 * and adds the checks that involve several variables.
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
export const NETWORK_VALUES: Record<string, 'egress' | 'off'> = {
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

export const envSchema = z.object({
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

export type Env = z.infer<typeof envSchema>;
