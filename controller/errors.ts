/**
 * Typed errors with codes (docs/architecture.md, Errors). A failure of the user's code is data (a
 * StepResult); a failure of the infrastructure is one of these. `describeError` is the one way any
 * thrown value becomes text for a log line; `userMessage` is what a Slack user may read.
 */
export abstract class AppError extends Error {
  abstract readonly code: string;
  /** A message fit to show a Slack user: one sentence, no secrets, no stack. */
  readonly userMessage: string;

  constructor(message: string, options?: { cause?: unknown; userMessage?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.userMessage = options?.userMessage ?? message;
  }
}

export class ConfigError extends AppError {
  readonly code = 'config_invalid';
}

/** Message text for any thrown value, for logs. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
