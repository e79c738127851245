import { DownscopedClient, type AuthClient, type CredentialAccessBoundary } from 'google-auth-library';
import { SandboxError } from '../sandbox.js';

/**
 * Per-step credentials for the Cloud Run sandbox (docs/architecture.md, Isolation on Cloud Run). The sandbox job's own
 * service account has no roles; each execution gets a short-lived token downscoped with a Credential
 * Access Boundary to one thread's prefix, so even a leaked token reaches nothing but that thread's
 * own files. Controller state (`threads/...`) and every other thread stay out of reach.
 */

export interface MintedToken {
  token: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

export interface TokenMinter {
  /** A token for objects under `prefix` (ends with `/`), valid for at least `validForSec` more seconds. */
  mint(prefix: string, options: { validForSec: number }): Promise<MintedToken>;
}

// Only characters our own prefixes use: nothing can close the quoted CEL string literal.
const prefixPattern = /^(?:[A-Za-z0-9._-]+\/)+$/;
const bucketPattern = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

/**
 * The boundary for one thread. Rules are a union; a request is allowed when some rule grants the
 * permission on the resource and its condition holds.
 *
 * 1. `roles/storage.objectUser` (get/create/update/delete/list objects, no ACL or IAM changes) when
 *    either the object's name starts with the prefix, or the request is a listing whose `prefix`
 *    parameter starts with it. The trailing `/` is what keeps thread `1.2` out of thread `1.23`.
 * 2. `roles/storage.bucketViewer` (`storage.buckets.get`, which gcsfuse calls at mount) on this bucket.
 *    Not `legacyBucketReader`: that role also carries `storage.objects.list`, and a listing request's
 *    resource is the bucket itself, so it would let the token list every thread's object names.
 */
export function threadAccessBoundary(bucket: string, prefix: string): CredentialAccessBoundary {
  if (!bucketPattern.test(bucket)) throw new Error(`not a bucket name: ${JSON.stringify(bucket)}`);
  if (!prefixPattern.test(prefix) || prefix.split('/').some((part) => part === '.' || part === '..')) {
    throw new Error(`not a thread prefix (letters, digits, . _ - and a trailing /): ${JSON.stringify(prefix)}`);
  }
  const bucketResource = `//storage.googleapis.com/projects/_/buckets/${bucket}`;
  return {
    accessBoundary: {
      accessBoundaryRules: [
        {
          availableResource: bucketResource,
          availablePermissions: ['inRole:roles/storage.objectUser'],
          availabilityCondition: {
            title: 'thread-prefix-only',
            expression:
              `resource.name.startsWith('projects/_/buckets/${bucket}/objects/${prefix}')` +
              ` || api.getAttribute('storage.googleapis.com/objectListPrefix', '').startsWith('${prefix}')`,
          },
        },
        {
          availableResource: bucketResource,
          availablePermissions: ['inRole:roles/storage.bucketViewer'],
        },
      ],
    },
  };
}

/**
 * Mints through google-auth-library's DownscopedClient: the source client's access token is
 * exchanged at Google's STS for a downscoped one. STS gives the new token the source token's
 * remaining lifetime, so the source must hand out tokens that outlive a step: createGcpClients uses
 * a self-impersonated client whose eager refresh threshold covers the longest step.
 */
export class DownscopedTokenMinter implements TokenMinter {
  /** `source` resolves the client whose tokens are exchanged (created lazily: it may look up credentials). */
  constructor(private readonly options: { source: () => Promise<AuthClient>; bucket: string }) {}

  async mint(prefix: string, options: { validForSec: number }): Promise<MintedToken> {
    const credentialAccessBoundary = threadAccessBoundary(this.options.bucket, prefix);
    let response;
    try {
      const client = new DownscopedClient({ authClient: await this.options.source(), credentialAccessBoundary });
      response = await client.getAccessToken();
    } catch (error) {
      throw new SandboxError('start_failed', 'could not mint a downscoped storage token for the sandbox', {
        cause: error,
        userMessage: 'The sandbox could not be given access to this thread’s files (token exchange failed).',
      });
    }
    const expiresAt = response.expirationTime ?? Date.now() + 3600_000;
    if (!response.token) throw new SandboxError('start_failed', 'the token exchange returned no access token');
    if (expiresAt - Date.now() < options.validForSec * 1000) {
      throw new SandboxError(
        'start_failed',
        `the downscoped token expires in ${Math.round((expiresAt - Date.now()) / 1000)} s, less than the step needs (${options.validForSec} s)`,
        { userMessage: 'The sandbox token would expire before the step ends; lower STEP_TIMEOUT_SEC (at most about 50 minutes on Cloud Run).' },
      );
    }
    return { token: response.token, expiresAt };
  }
}

/** Emulators and tests: the same token every time (the fake checks it reaches the execution). */
export class StaticTokenMinter implements TokenMinter {
  readonly minted: string[] = [];
  constructor(private readonly token: string) {}

  async mint(prefix: string, options: { validForSec: number }): Promise<MintedToken> {
    this.minted.push(prefix);
    return { token: this.token, expiresAt: Date.now() + options.validForSec * 1000 + 60_000 };
  }
}
