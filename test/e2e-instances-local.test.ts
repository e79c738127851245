import { localBackend } from './helpers/harness.js';
import { instanceScenarios } from './helpers/instance-scenarios.js';

// Issue 15 with the embedded store: bot processes sharing one DATA_DIR, steps in local Python processes.
instanceScenarios('local', localBackend);
