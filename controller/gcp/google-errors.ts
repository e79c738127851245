/**
 * Reading Google's errors for operators, and repeating the calls that are worth repeating.
 *
 * @google-cloud/run raises a GoogleError whose `code` is the gRPC status, also over REST (google-gax maps the HTTP
 * status: https://cloud.google.com/apis/design/errors#http_mapping). None of the generated client's methods retry
 * anything (jobs_client_config.json and executions_client_config.json: every method is `non_idempotent` with no
 * retry codes), so a read that meets a transient status is repeated here. @google-cloud/storage raises an ApiError
 * whose `code` is the HTTP status and retries by itself (createStorage).
 */

const STATUS_NAMES: Record<number, string> = {
  1: 'CANCELLED',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  16: 'UNAUTHENTICATED',
};

/** gRPC statuses that say "the service or the network, try again", for calls that change nothing (get, list, test). */
const TRANSIENT_STATUSES = new Set([4, 8, 13, 14]);

/** The error's status code (gRPC for Cloud Run, HTTP for Storage), when it has one. */
export function errorCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** `NOT_FOUND: <first line of the message>`: what an operator needs to see, without a stack. */
export function describeGoogleError(error: unknown): string {
  const code = errorCode(error);
  const message = (error instanceof Error ? error.message : String(error)).split('\n')[0]!.trim();
  const name = code === undefined ? undefined : STATUS_NAMES[code];
  return name === undefined || message.includes(name) ? message : `${name}: ${message}`;
}

/**
 * Runs a call that changes nothing again while it fails with a transient status: up to `attempts` tries, waiting
 * `firstDelayMs`, then twice as long each time.
 */
export async function retryTransient<T>(call: () => Promise<T>, options: { attempts?: number; firstDelayMs?: number } = {}): Promise<T> {
  const attempts = options.attempts ?? 4;
  let delayMs = options.firstDelayMs ?? 500;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const code = errorCode(error);
      if (attempt >= attempts || code === undefined || !TRANSIENT_STATUSES.has(code)) throw error;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      delayMs *= 2;
    }
  }
}

/** Environment variables that must never reach the sandbox: a Slack or OpenAI name, or a value shaped like their secrets. */
export function secretLookingVariables(env: readonly { name?: string | null; value?: string | null }[]): string[] {
  return env
    .filter(({ name, value }) => /^(SLACK_|OPENAI_)/.test(name ?? '') || /^(xox[abpr]-|xapp-|sk-)/.test(value ?? ''))
    .map(({ name }) => name ?? '(unnamed)');
}
