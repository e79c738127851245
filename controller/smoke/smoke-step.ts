import { z } from 'zod';
import type { LibraryVersions } from '../agent/libraries.js';

/**
 * The one step the post-deploy check runs in the sandbox, and what it reports back (one `OI_SMOKE {json}` line on
 * stdout): when the entrypoint mounted the prefix (its timings file: the step's, or the session's), how long each listed library takes to
 * import, the names of the environment the code sees (and any that look like a Slack or OpenAI secret), and what
 * the metadata server's account may do on the bucket (testIamPermissions with the metadata server's token:
 * https://cloud.google.com/storage/docs/json_api/v1/buckets/testIamPermissions; the metadata server:
 * https://cloud.google.com/run/docs/container-contract#metadata-server).
 */

/**
 * Library name → modules to try, first that imports wins; others import under their own name with '-' as '_'.
 * The same table as IMPORT_NAMES in sandbox-image/record_libraries.py (test/smoke.test.ts keeps them equal).
 */
export const IMPORT_NAMES: Record<string, string[]> = {
  'beautifulsoup4': ['bs4'],
  'ffmpeg-python': ['ffmpeg'],
  'opencv-python': ['cv2'],
  'opencv-python-headless': ['cv2'],
  'pymupdf': ['pymupdf', 'fitz'],
  'scikit-learn': ['sklearn'],
};

/** Bucket permissions an account without roles must not hold (any one of them would reach threads' files). */
const BUCKET_PERMISSIONS = ['storage.objects.list', 'storage.objects.get', 'storage.objects.create', 'storage.objects.delete', 'storage.buckets.get'];

export interface SmokeStepOptions {
  libraries: LibraryVersions;
  bucket: string;
  /** host[:port] of the metadata server the step asks (metadata.google.internal on Cloud Run); undefined: skip that check. */
  metadataHost?: string;
  /** The GCS JSON API base URL the step calls with the metadata server's token. */
  storageUrl: string;
}

const PYTHON = String.raw`
import glob, importlib, json, os, time, urllib.error, urllib.parse, urllib.request
out = {'codeStartedAt': time.time()}
P = json.loads(PARAMETERS)
out['entrypoint'] = None
for path in glob.glob('.oi/steps/*/entrypoint-timings.json') + glob.glob('.oi/session/*/entrypoint-timings.json'):
    with open(path) as f:
        out['entrypoint'] = json.load(f)
out['importSec'], out['failed'] = {}, {}
for name, modules in P['libraries'].items():
    began, error = time.perf_counter(), None
    for module in modules:
        try:
            importlib.import_module(module)
            error = None
            break
        except Exception as exception:
            error = (type(exception).__name__ + ': ' + str(exception)).splitlines()[0][:200]
    if error is None:
        out['importSec'][name] = round(time.perf_counter() - began, 3)
    else:
        out['failed'][name] = error
out['environment'] = sorted(os.environ)
out['secretLooking'] = sorted(k for k, v in os.environ.items() if k.startswith(('SLACK_', 'OPENAI_')) or v.startswith(('xoxb-', 'xoxp-', 'xapp-', 'sk-')))
def metadata(path):
    request = urllib.request.Request('http://' + P['metadataHost'] + '/computeMetadata/v1/instance/service-accounts/default/' + path, headers={'Metadata-Flavor': 'Google'})
    return urllib.request.urlopen(request, timeout=10).read().decode()
if P['metadataHost'] is not None:
    try:
        token = json.loads(metadata('token'))['access_token']
        query = urllib.parse.urlencode([('permissions', p) for p in P['permissions']])
        request = urllib.request.Request(P['storageUrl'] + '/storage/v1/b/' + P['bucket'] + '/iam/testPermissions?' + query, headers={'Authorization': 'Bearer ' + token})
        held = json.loads(urllib.request.urlopen(request, timeout=10).read()).get('permissions', [])
        out['metadata'] = {'email': metadata('email').strip(), 'held': held}
    except Exception as exception:
        out['metadata'] = {'error': (type(exception).__name__ + ': ' + str(exception)).splitlines()[0][:300]}
print('OI_SMOKE ' + json.dumps(out))
`;

/** The step's Python code: the script above with its parameters as one JSON literal (nothing else is interpolated). */
export function smokeStepCode(options: SmokeStepOptions): string {
  const libraries = Object.fromEntries(
    Object.keys(options.libraries).map((name) => [name, IMPORT_NAMES[name.toLowerCase()] ?? [name.toLowerCase().replaceAll('-', '_')]]),
  );
  const parameters = { libraries, bucket: options.bucket, metadataHost: options.metadataHost ?? null, storageUrl: options.storageUrl, permissions: BUCKET_PERMISSIONS };
  return `PARAMETERS = ${JSON.stringify(JSON.stringify(parameters))}\n${PYTHON.trimStart()}`;
}

const reportSchema = z.object({
  codeStartedAt: z.number(),
  entrypoint: z.object({ started: z.number(), brokerReady: z.number(), mounted: z.number() }).nullable(),
  importSec: z.record(z.string(), z.number()),
  failed: z.record(z.string(), z.string()),
  environment: z.array(z.string()),
  secretLooking: z.array(z.string()),
  metadata: z.union([z.object({ email: z.string(), held: z.array(z.string()) }), z.object({ error: z.string() })]).optional(),
});

export type SmokeStepReport = z.infer<typeof reportSchema>;

/** The report the step printed, or why there is none. */
export function parseSmokeStepOutput(stdout: string): SmokeStepReport | string {
  const line = stdout.split('\n').find((candidate) => candidate.startsWith('OI_SMOKE '));
  if (line === undefined) return 'the step printed no report';
  const parsed = reportSchema.safeParse(JSON.parse(line.slice('OI_SMOKE '.length)));
  return parsed.success ? parsed.data : `the step's report does not parse: ${parsed.error.issues[0]?.message ?? ''}`;
}
