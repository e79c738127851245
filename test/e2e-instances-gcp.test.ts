import { startGcpFakes } from './helpers/gcp-fakes.js';
import { gcsRequests, instanceScenarios } from './helpers/instance-scenarios.js';

// Issue 15 in the production shape against fakes: bot processes sharing one (fake) GCS bucket, every step a
// (fake) Cloud Run Job execution.
instanceScenarios('GCS', async () => {
  const fakes = await startGcpFakes();
  return { env: fakes.env, store: () => fakes.store, close: fakes.close, ...gcsRequests(fakes.gcs) };
});
