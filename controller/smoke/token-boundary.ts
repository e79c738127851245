import type { SmokeCheck } from './smoke-report.js';

/**
 * Proves the step's token reaches its own thread and nothing else, by asking GCS's JSON API with it directly
 * (https://cloud.google.com/storage/docs/json_api/v1/objects/list, .../objects/get): a listing of its own prefix
 * must answer 200 (else the refusals below would prove nothing), while a listing of another thread's prefix, a
 * read of the canary object written there, a listing of the history (`threads/`) and of the whole bucket must
 * answer 403 (the access boundary of controller/sandbox/cloud-run/downscoped-token.ts).
 */

export interface TokenBoundaryTargets {
  /** GCS JSON API base URL: https://storage.googleapis.com, or the emulator's. */
  storageUrl: string;
  bucket: string;
  /** The step's own prefix, e.g. workspaces/smoke/<run>/main/. */
  ownPrefix: string;
  /** Another scratch thread's prefix, and an object written there before the step. */
  otherPrefix: string;
  canaryObject: string;
  /** Where the token came from, for the report ("read back from the execution", "minted like a step's"). */
  tokenSource: string;
}

export async function tokenBoundaryChecks(token: string, targets: TokenBoundaryTargets): Promise<SmokeCheck[]> {
  const bucketUrl = `${targets.storageUrl}/storage/v1/b/${encodeURIComponent(targets.bucket)}`;
  const list = (prefix: string | undefined) => `${bucketUrl}/o${prefix === undefined ? '' : `?prefix=${encodeURIComponent(prefix)}`}`;
  const attempts: Array<{ name: string; url: string; expected: 200 | 403 }> = [
    { name: "the step's token lists its own thread's prefix", url: list(targets.ownPrefix), expected: 200 },
    { name: "the step's token cannot list another thread's prefix", url: list(targets.otherPrefix), expected: 403 },
    { name: "the step's token cannot read another thread's file", url: `${bucketUrl}/o/${encodeURIComponent(targets.canaryObject)}?alt=media`, expected: 403 },
    { name: "the step's token cannot list the conversation histories (threads/)", url: list('threads/'), expected: 403 },
    { name: "the step's token cannot list the whole bucket", url: list(undefined), expected: 403 },
  ];
  const checks: SmokeCheck[] = [];
  for (const attempt of attempts) {
    const status = await fetch(attempt.url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(20_000) }).then(
      async (response) => {
        await response.arrayBuffer();
        return response.status;
      },
      (error: unknown) => `no answer (${error instanceof Error ? error.message : String(error)})`,
    );
    checks.push({
      name: attempt.name,
      outcome: status === attempt.expected ? 'pass' : 'fail',
      detail: `HTTP ${status}, expected ${attempt.expected} (token ${targets.tokenSource})`,
    });
  }
  return checks;
}
