import { loadStorageConfig, type Config } from '../config.js';
import { ConfigError, describeError } from '../errors.js';
import { createStorage } from '../gcp/gcp-clients.js';
import { createLogger, type Logger } from '../logger.js';
import {
  RETENTION_USAGE,
  RetentionUsageError,
  formatRetentionReport,
  parseRetentionArguments,
  retentionDays,
  runRetention,
} from './retention.js';
import { GcsWorkspaceStore } from '../workspace/gcs-workspace.js';
import { LocalWorkspaceStore } from '../workspace/local-workspace.js';
import type { WorkspaceStore } from '../workspace/workspace.js';

/**
 * `npm run retention -- [--days N] [--dry-run]`: a composition root of its own, like main.ts. It
 * reads only the storage settings, so it runs with no Slack or OpenAI secret in its environment
 * (a cron job, Cloud Scheduler + a Cloud Run Job, or an operator's shell).
 * Output: JSON lines on stdout; problems as one line on stderr with a non-zero exit code.
 */
async function main(): Promise<void> {
  const options = parseRetentionArguments(process.argv.slice(2));
  if (options.help) {
    process.stdout.write(`${RETENTION_USAGE}\n`);
    return;
  }
  const config = loadStorageConfig(process.env);
  const days = retentionDays(options.days, config.retentionDays);
  const logger = createLogger({ level: config.logLevel });
  const store = createStore(config.storage, logger);
  const report = await runRetention(store, { days, dryRun: options.dryRun, nowMs: Date.now() });
  for (const line of formatRetentionReport(report)) process.stdout.write(`${line}\n`);
}

function createStore(storage: Config['storage'], logger: Logger): WorkspaceStore {
  if (storage.backend === 'local') return new LocalWorkspaceStore(storage.dataDir);
  return new GcsWorkspaceStore({ storage: createStorage(storage.apiEndpoint), bucket: storage.bucket, logger });
}

main().catch((error: unknown) => {
  if (error instanceof RetentionUsageError || error instanceof ConfigError) {
    process.stderr.write(`retention: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`retention failed: ${describeError(error)}\n`);
  process.exit(1);
});
