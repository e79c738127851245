import { recordedLibraries } from '../agent/libraries.js';
import { loadBackendConfig } from '../config.js';
import { ConfigError, describeError } from '../errors.js';
import { createGcpClients } from '../gcp/gcp-clients.js';
import { createLogger } from '../logger.js';
import { ExecutionWatch } from './execution-watch.js';
import { formatSmokeReport, smokeExitCode } from './smoke-report.js';
import { runSmoke } from './smoke.js';

/**
 * `npm run smoke [-- --allow-emulator]`: the post-deploy check (docs/deploy.md, step 9), a composition root of its
 * own like main.ts. It reads only the storage and sandbox settings (no Slack or OpenAI secret), runs against the
 * real project with Application Default Credentials, prints its report on stdout and exits 0 only when every check
 * passed (1 when one failed, 2 when it refused to run). Never part of the test suite against a real project: its
 * own tests run it against the fakes, which it refuses unless given --allow-emulator.
 */

const USAGE = 'usage: npm run smoke [-- --allow-emulator]   (STORAGE_BACKEND=gcs, SANDBOX_BACKEND=cloudrun and their settings)';
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

class RefusedError extends Error {}

async function main(): Promise<number> {
  const options = new Set(process.argv.slice(2));
  if (options.has('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const unknown = [...options].filter((option) => option !== '--allow-emulator');
  if (unknown.length > 0) throw new RefusedError(`unknown option ${unknown.join(' ')}\n${USAGE}`);
  const config = loadBackendConfig(process.env);
  if (config.storage.backend !== 'gcs' || config.sandbox.backend !== 'cloudrun') {
    throw new RefusedError('the post-deploy check needs STORAGE_BACKEND=gcs and SANDBOX_BACKEND=cloudrun (docs/deploy.md, step 9)');
  }
  const emulated = emulatorEndpoints({ GCS_API_ENDPOINT: config.storage.apiEndpoint, CLOUD_RUN_API_ENDPOINT: config.sandbox.apiEndpoint, GCE_METADATA_HOST: process.env.GCE_METADATA_HOST });
  if (emulated.length > 0 && !options.has('--allow-emulator')) {
    throw new RefusedError(`${emulated.join(', ')} point at an emulator: the post-deploy check runs against a real project (--allow-emulator is for its own tests)`);
  }
  if (options.has('--allow-emulator') && config.sandbox.apiEndpoint === undefined) {
    throw new RefusedError('--allow-emulator needs GCS_API_ENDPOINT and CLOUD_RUN_API_ENDPOINT on 127.0.0.1');
  }
  const logger = createLogger({ level: config.logLevel === 'DEBUG' ? 'DEBUG' : 'WARNING' });
  let watch: ExecutionWatch | undefined;
  const clients = createGcpClients(config, logger, { instrumentJobs: (jobs, executions) => (watch = new ExecutionWatch(executions)).wrap(jobs) });
  try {
    const report = await runSmoke({
      clients,
      watch: watch!,
      libraries: (await recordedLibraries()).libraries,
      storageUrl: config.storage.apiEndpoint?.replace(/\/$/, '') ?? 'https://storage.googleapis.com',
      // On Cloud Run the sandbox's own metadata server; with emulators only a local stand-in, if the test gave one.
      metadataHost: config.sandbox.apiEndpoint === undefined ? 'metadata.google.internal' : process.env.GCE_METADATA_HOST,
      stepTimeoutSec: config.limits.stepTimeoutSec,
    });
    for (const line of formatSmokeReport(report)) process.stdout.write(`${line}\n`);
    return smokeExitCode(report);
  } finally {
    await clients.sandbox.close();
  }
}

/**
 * The variables that point at something other than Google. With --allow-emulator each must be on this machine:
 * the emulated job gets a fixed token, and nothing may leave 127.0.0.1.
 */
function emulatorEndpoints(endpoints: Record<string, string | undefined>): string[] {
  const set = Object.entries(endpoints).filter(([, value]) => value !== undefined) as [string, string][];
  for (const [name, value] of set) {
    const host = new URL(value.includes('://') ? value : `http://${value}`).hostname;
    if (!LOOPBACK.has(host)) throw new RefusedError(`${name} is ${value}: an emulator must be on 127.0.0.1`);
  }
  return set.map(([name]) => name);
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof RefusedError || error instanceof ConfigError) {
      process.stderr.write(`smoke: ${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`smoke failed: ${describeError(error).split('\n')[0]}\n`);
    process.exit(1);
  },
);
