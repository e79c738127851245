import { describe, expect, it } from 'vitest';
import type { CredentialAccessBoundary } from 'google-auth-library';
import { threadAccessBoundary } from '../controller/sandbox/cloud-run/downscoped-token.js';

/**
 * The Credential Access Boundary for one thread: exact rules, and their meaning checked with a tiny
 * evaluator of the CEL subset they use (startsWith on resource.name and on the list-prefix
 * attribute, joined by ||) plus the permissions of the two roles involved.
 */

const BUCKET = 'oi-bucket';
const PREFIX = 'workspaces/T1/C1/1.2/';

const rolePermissions: Record<string, string[]> = {
  'inRole:roles/storage.objectUser': ['storage.objects.get', 'storage.objects.create', 'storage.objects.update', 'storage.objects.delete', 'storage.objects.list'],
  'inRole:roles/storage.bucketViewer': ['storage.buckets.get', 'storage.buckets.list'],
};

interface Request {
  permission: string;
  /** IAM resource name: `projects/_/buckets/B` or `projects/_/buckets/B/objects/NAME`. */
  resource: string;
  /** For object listings: the request's prefix parameter ('' when absent). */
  listPrefix?: string;
}

function evaluate(expression: string, request: Request): boolean {
  return expression.split(' || ').some((term) => {
    const resourceTerm = /^resource\.name\.startsWith\('([^']*)'\)$/.exec(term);
    if (resourceTerm) return request.resource.startsWith(resourceTerm[1]!);
    const listTerm = /^api\.getAttribute\('storage\.googleapis\.com\/objectListPrefix', ''\)\.startsWith\('([^']*)'\)$/.exec(term);
    if (listTerm) return (request.listPrefix ?? '').startsWith(listTerm[1]!);
    throw new Error(`evaluator does not understand: ${term}`);
  });
}

function allowed(boundary: CredentialAccessBoundary, request: Request): boolean {
  return boundary.accessBoundary.accessBoundaryRules.some((rule) => {
    const bucketName = rule.availableResource.replace('//storage.googleapis.com/', '');
    if (request.resource !== bucketName && !request.resource.startsWith(`${bucketName}/objects/`)) return false;
    if (!rule.availablePermissions.some((role) => rolePermissions[role]?.includes(request.permission))) return false;
    return rule.availabilityCondition === undefined || evaluate(rule.availabilityCondition.expression, request);
  });
}

const bucketResource = `projects/_/buckets/${BUCKET}`;
const object = (name: string) => `${bucketResource}/objects/${name}`;

describe('threadAccessBoundary', () => {
  it('is exactly two rules: objects and listing under the prefix, and bucket metadata', () => {
    expect(threadAccessBoundary(BUCKET, PREFIX)).toStrictEqual({
      accessBoundary: {
        accessBoundaryRules: [
          {
            availableResource: '//storage.googleapis.com/projects/_/buckets/oi-bucket',
            availablePermissions: ['inRole:roles/storage.objectUser'],
            availabilityCondition: {
              title: 'thread-prefix-only',
              expression:
                "resource.name.startsWith('projects/_/buckets/oi-bucket/objects/workspaces/T1/C1/1.2/')" +
                " || api.getAttribute('storage.googleapis.com/objectListPrefix', '').startsWith('workspaces/T1/C1/1.2/')",
            },
          },
          {
            availableResource: '//storage.googleapis.com/projects/_/buckets/oi-bucket',
            availablePermissions: ['inRole:roles/storage.bucketViewer'],
          },
        ],
      },
    });
  });

  it('reaches the thread’s own objects and listing, and the bucket metadata', () => {
    const boundary = threadAccessBoundary(BUCKET, PREFIX);
    for (const permission of ['storage.objects.get', 'storage.objects.create', 'storage.objects.delete']) {
      expect(allowed(boundary, { permission, resource: object('workspaces/T1/C1/1.2/data.csv') }), permission).toBe(true);
      expect(allowed(boundary, { permission, resource: object('workspaces/T1/C1/1.2/.oi/steps/s/result.json') }), permission).toBe(true);
    }
    expect(allowed(boundary, { permission: 'storage.objects.list', resource: bucketResource, listPrefix: 'workspaces/T1/C1/1.2/' })).toBe(true);
    expect(allowed(boundary, { permission: 'storage.objects.list', resource: bucketResource, listPrefix: 'workspaces/T1/C1/1.2/charts/' })).toBe(true);
    expect(allowed(boundary, { permission: 'storage.buckets.get', resource: bucketResource })).toBe(true);
  });

  it('does not reach thread 1.23 from thread 1.2 (the trailing slash), nor history, nor other buckets', () => {
    const boundary = threadAccessBoundary(BUCKET, PREFIX);
    const denied: Request[] = [
      { permission: 'storage.objects.get', resource: object('workspaces/T1/C1/1.23/data.csv') },
      { permission: 'storage.objects.create', resource: object('workspaces/T1/C1/1.23/evil.py') },
      { permission: 'storage.objects.get', resource: object('workspaces/T1/C1/1.2') },
      { permission: 'storage.objects.list', resource: bucketResource, listPrefix: 'workspaces/T1/C1/1.2' },
      { permission: 'storage.objects.list', resource: bucketResource, listPrefix: 'workspaces/T1/C1/1.23/' },
      { permission: 'storage.objects.list', resource: bucketResource, listPrefix: 'workspaces/' },
      { permission: 'storage.objects.list', resource: bucketResource, listPrefix: '' },
      { permission: 'storage.objects.list', resource: bucketResource },
      { permission: 'storage.objects.get', resource: object('threads/T1/C1/1.2/messages.json') },
      { permission: 'storage.objects.get', resource: 'projects/_/buckets/oi-bucket-2/objects/workspaces/T1/C1/1.2/data.csv' },
      { permission: 'storage.buckets.get', resource: 'projects/_/buckets/other-bucket' },
      { permission: 'storage.buckets.setIamPolicy', resource: bucketResource },
      { permission: 'storage.objects.setIamPolicy', resource: object('workspaces/T1/C1/1.2/data.csv') },
    ];
    for (const request of denied) expect(allowed(boundary, request), JSON.stringify(request)).toBe(false);
    // And the other way round: 1.23's token does not reach 1.2.
    const longer = threadAccessBoundary(BUCKET, 'workspaces/T1/C1/1.23/');
    expect(allowed(longer, { permission: 'storage.objects.get', resource: object('workspaces/T1/C1/1.2/data.csv') })).toBe(false);
    expect(allowed(longer, { permission: 'storage.objects.get', resource: object('workspaces/T1/C1/1.23/data.csv') })).toBe(true);
  });

  it('refuses prefixes that could widen or break the expression', () => {
    for (const prefix of ['workspaces/T1/C1/1.2', '', '/', 'workspaces/../threads/', "workspaces/x') || true || ('/", 'a b/', 'workspaces//x/']) {
      expect(() => threadAccessBoundary(BUCKET, prefix), prefix).toThrow(/not a thread prefix/);
    }
    expect(() => threadAccessBoundary("b') || true || ('", PREFIX)).toThrow(/not a bucket name/);
  });
});
