import { endToEndScenarios, fileScenarios } from './helpers/e2e-scenarios.js';
import { startGcpFakes } from './helpers/gcp-fakes.js';

// The production shape with warm sessions (SANDBOX_SESSION=on, the default; issue 13): one (fake) Cloud Run
// Job execution per thread session, started with the turn; its relay polls the thread's mailbox in the fake
// GCS and feeds the real `runner.py --session`. The same scenarios as e2e-gcp, where every step starts an
// execution of its own.
const gcpSessionBackend = async () => {
  const fakes = await startGcpFakes();
  return { env: fakes.env, store: () => fakes.store, close: fakes.close };
};
endToEndScenarios('GCS workspace, Cloud Run sessions', gcpSessionBackend);
fileScenarios('GCS workspace, Cloud Run sessions', gcpSessionBackend);
