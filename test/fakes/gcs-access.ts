import { HttpError } from './gcs-wire.js';

/**
 * Who may do what in FakeGcs, for requests that carry a bearer token a test (or FakeCloudRun) declared. Requests
 * without a token, or with one nobody declared, are the emulator's unauthenticated client and may do anything, as
 * before. Two kinds of declared tokens, after what Google decides for real ones:
 * - bound to a prefix: a token downscoped with the thread's Credential Access Boundary
 *   (controller/sandbox/cloud-run/downscoped-token.ts): objects whose name starts with the prefix, listings whose
 *   `prefix` parameter starts with it, and the bucket's metadata (storage.buckets.get); nothing else;
 * - without roles: the token of an account that holds no role on the bucket (the sandbox job's own account, as the
 *   metadata server hands it out): every request is refused, and testIamPermissions returns no permission.
 * A refusal is GCS's 403 (https://cloud.google.com/storage/docs/json_api/v1/status-codes#403-forbidden).
 */

export type GcsAction =
  | { kind: 'bucket' }
  | { kind: 'list'; prefix: string }
  | { kind: 'object'; name: string; permission: 'storage.objects.get' | 'storage.objects.create' | 'storage.objects.delete' };

export class GcsAccess {
  private readonly boundTokens = new Map<string, string>();
  private readonly rolelessTokens = new Set<string>();
  /** Requests refused, for assertions: `permission on what`. */
  readonly refused: string[] = [];

  /** The token reaches only objects under `prefix` (a downscoped token; a later call for the same token replaces it). */
  bindToPrefix(token: string, prefix: string): void {
    this.boundTokens.set(token, prefix);
  }

  /** The token's account holds no role on any bucket. */
  declareWithoutRoles(token: string): void {
    this.rolelessTokens.add(token);
  }

  /** Throws GCS's 403 when `token` may not do `action` on `bucket`. */
  check(token: string | undefined, bucket: string, action: GcsAction): void {
    if (token === undefined) return;
    const [permission, resource] =
      action.kind === 'bucket'
        ? ['storage.buckets.get', bucket]
        : action.kind === 'list'
          ? ['storage.objects.list', bucket]
          : [action.permission, `${bucket}/${action.name}`];
    const prefix = this.boundTokens.get(token);
    const allowed = this.rolelessTokens.has(token)
      ? false
      : prefix === undefined ||
        action.kind === 'bucket' ||
        (action.kind === 'list' ? action.prefix.startsWith(prefix) : action.name.startsWith(prefix));
    if (allowed) return;
    this.refused.push(`${permission} on ${resource}`);
    const target = action.kind === 'object' ? 'object' : 'bucket';
    throw new HttpError(
      403,
      'forbidden',
      `Caller does not have ${permission} access to the Google Cloud Storage ${target}. Permission '${permission}' denied on resource (or it may not exist).`,
    );
  }

  /** testIamPermissions: the subset of `asked` the token holds on the bucket as a whole. */
  heldPermissions(token: string | undefined, asked: string[]): string[] {
    if (token !== undefined && this.rolelessTokens.has(token)) return [];
    if (token !== undefined && this.boundTokens.has(token)) return asked.filter((permission) => permission === 'storage.buckets.get');
    return asked;
  }
}
