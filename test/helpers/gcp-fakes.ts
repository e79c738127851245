import { Storage } from '@google-cloud/storage';
import { EMULATOR_SANDBOX_TOKEN } from '../../controller/gcp/gcp-clients.js';
import { silentLogger } from '../../controller/logger.js';
import { GcsWorkspaceStore } from '../../controller/workspace/gcs-workspace.js';
import { FakeCloudRun } from '../fakes/fake-cloud-run.js';
import { FakeGcs } from '../fakes/fake-gcs.js';

/**
 * Fake GCS + fake Cloud Run on 127.0.0.1, and the environment that points the bot at them
 * (STORAGE_BACKEND=gcs, SANDBOX_BACKEND=cloudrun). Cloud Run executions really run runner.py over
 * the thread's objects; the fake checks that the token in the overrides is the emulator token.
 */
export async function startGcpFakes(names = { bucket: 'oi-e2e', project: 'test-project', region: 'us-central1', job: 'oi-sandbox' }) {
  const gcs = new FakeGcs([names.bucket]);
  // The end-to-end scenarios start up to 20 sessions at once on the test machine's 2 cores (20 threads at once):
  // their runners import only dill ahead, as the local sandbox's do; Cloud Run's sessions import the image's list.
  const run = new FakeCloudRun({ gcs, ...names, expectedToken: EMULATOR_SANDBOX_TOKEN, sessionPreload: 'dill' });
  const [{ url: gcsUrl }, { url: runUrl }] = await Promise.all([gcs.start(), run.start()]);
  const env: Record<string, string> = {
    STORAGE_BACKEND: 'gcs',
    GCS_BUCKET: names.bucket,
    GCS_API_ENDPOINT: gcsUrl,
    SANDBOX_BACKEND: 'cloudrun',
    GCP_PROJECT: names.project,
    GCP_REGION: names.region,
    SANDBOX_JOB: names.job,
    CLOUD_RUN_API_ENDPOINT: runUrl,
  };
  const store = new GcsWorkspaceStore({ storage: new Storage({ apiEndpoint: gcsUrl, projectId: names.project }), bucket: names.bucket, logger: silentLogger });
  const close = async () => {
    await Promise.all([gcs.close(), run.close()]);
    const problems = [...gcs.unexpected.map((request) => `GCS: ${request.method} ${request.path}`), ...run.unexpected, ...run.violations];
    if (problems.length > 0) throw new Error(`the Google Cloud fakes saw requests they do not accept:\n${problems.join('\n')}`);
  };
  return { gcs, run, env, store, close };
}
