import { endToEndScenarios, fileScenarios } from './helpers/e2e-scenarios.js';
import { localBackend } from './helpers/harness.js';

// The embedded defaults: workspaces in DATA_DIR, steps in a local Python process (bubblewrap when present).
endToEndScenarios('local workspace, local sandbox', localBackend);
fileScenarios('local workspace, local sandbox', localBackend);
