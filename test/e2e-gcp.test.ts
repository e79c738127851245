import { endToEndScenarios, fileScenarios } from './helpers/e2e-scenarios.js';
import { startGcpFakes } from './helpers/gcp-fakes.js';

// The production shape against fakes: workspaces and history in (fake) GCS, every step a (fake) Cloud Run
// Job execution of its own (SANDBOX_SESSION=off) that really runs runner.py over the thread's objects. Same
// scenarios as e2e-local; e2e-gcp-sessions runs them with warm sessions.
const gcpBackend = async () => {
  const fakes = await startGcpFakes();
  return { env: { ...fakes.env, SANDBOX_SESSION: 'off' }, store: () => fakes.store, close: fakes.close };
};
endToEndScenarios('GCS workspace, Cloud Run sandbox, one execution per step', gcpBackend);
fileScenarios('GCS workspace, Cloud Run sandbox, one execution per step', gcpBackend);
