import { endToEndScenarios, fileScenarios } from './helpers/e2e-scenarios.js';
import { startGcpFakes } from './helpers/gcp-fakes.js';

// The production shape against fakes: workspaces and history in (fake) GCS, every step a (fake) Cloud Run
// Job execution that really runs runner.py over the thread's objects. Same scenarios as e2e-local.
const gcpBackend = async () => {
  const fakes = await startGcpFakes();
  return { env: fakes.env, store: () => fakes.store, close: fakes.close };
};
endToEndScenarios('GCS workspace, Cloud Run sandbox', gcpBackend);
fileScenarios('GCS workspace, Cloud Run sandbox', gcpBackend);
