import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { endToEndScenarios, fileScenarios } from './helpers/e2e-scenarios.js';

// The embedded defaults: workspaces in DATA_DIR, steps in a local Python process (bubblewrap when present).
endToEndScenarios('local workspace, local sandbox', async () => ({
  env: {},
  store: (dataDir) => new LocalWorkspaceStore(dataDir),
  close: async () => {},
}));

fileScenarios('local workspace, local sandbox', async () => ({
  env: {},
  store: (dataDir) => new LocalWorkspaceStore(dataDir),
  close: async () => {},
}));
