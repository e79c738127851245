import { AppError } from '../errors.js';
import { DELIVERY_PREFIXES, DELIVERY_RECORD_TTL_MS } from '../workspace/deliveries.js';
import type { RecordStore } from '../workspace/records.js';
import type { WorkspaceStore } from '../workspace/workspace.js';

/**
 * Retention (issue 7): remove the workspaces and histories of threads that have not changed for N
 * days, and the coordination records that have expired (issue 15): de-duplication records after a day (Slack
 * retries for minutes), a thread's lease record left behind after N days. The command-line wrapper is retention-cli.ts; this file holds what can be tested without a
 * process: argument parsing and the run itself, against any WorkspaceStore.
 */

const DAY_MS = 24 * 60 * 60 * 1000;

export const RETENTION_USAGE = [
  'Usage: npm run retention -- [--days N] [--dry-run]',
  '  Removes the files and history of every thread not changed for N days.',
  '  --days N    age in days (default: RETENTION_DAYS)',
  '  --dry-run   list what would be removed, remove nothing',
  '  De-duplication records of Slack deliveries older than a day are removed on every run.',
  '  Storage comes from STORAGE_BACKEND, DATA_DIR or GCS_BUCKET, as for the bot.',
].join('\n');

export class RetentionUsageError extends AppError {
  readonly code = 'retention_usage';
}

export interface RetentionArguments {
  days?: number;
  dryRun: boolean;
  help: boolean;
}

export function parseRetentionArguments(argv: readonly string[]): RetentionArguments {
  const result: RetentionArguments = { dryRun: false, help: false };
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index]!;
    if (argument === '--dry-run') result.dryRun = true;
    else if (argument === '--help' || argument === '-h') result.help = true;
    else if (argument === '--days' || argument.startsWith('--days=')) {
      const value = argument === '--days' ? argv[++index] : argument.slice('--days='.length);
      result.days = parseDays(value, '--days');
    } else throw new RetentionUsageError(`unknown argument ${JSON.stringify(argument)}\n${RETENTION_USAGE}`);
  }
  return result;
}

/** The age limit: `--days` wins over RETENTION_DAYS; neither is an error, never a silent default. */
export function retentionDays(argumentsDays: number | undefined, configDays: number | undefined): number {
  const days = argumentsDays ?? configDays;
  if (days === undefined) {
    throw new RetentionUsageError(`set RETENTION_DAYS or pass --days N (how many days of inactivity before a thread is removed)\n${RETENTION_USAGE}`);
  }
  return days;
}

function parseDays(value: string | undefined, name: string): number {
  if (value === undefined || !/^\d+$/.test(value) || Number(value) < 1) {
    throw new RetentionUsageError(`${name} needs a whole number of days, 1 or more (got ${JSON.stringify(value ?? '')})`);
  }
  return Number(value);
}

export interface RetentionReport {
  days: number;
  dryRun: boolean;
  cutoffMs: number;
  threads: string[];
  /** Coordination records removed (or, in a dry run, that would be). */
  records: number;
}

export async function runRetention(
  store: WorkspaceStore,
  options: { days: number; dryRun: boolean; nowMs: number },
): Promise<RetentionReport> {
  const cutoffMs = options.nowMs - options.days * DAY_MS;
  const { removedThreads } = await store.removeOlderThan(cutoffMs, { dryRun: options.dryRun });
  const expiries: Array<[string, number]> = [...DELIVERY_PREFIXES.map((prefix): [string, number] => [prefix, options.nowMs - DELIVERY_RECORD_TTL_MS]), ['leases/', cutoffMs]];
  let records = 0;
  for (const [prefix, olderThanMs] of expiries) records += await expireRecords(store.records, prefix, olderThanMs, options.dryRun);
  return { days: options.days, dryRun: options.dryRun, cutoffMs, threads: removedThreads, records };
}

async function expireRecords(records: RecordStore, prefix: string, olderThanMs: number, dryRun: boolean): Promise<number> {
  if (!dryRun) return records.removeOlderThan(prefix, olderThanMs);
  return (await records.list(prefix)).filter((record) => record.updatedMs < olderThanMs).length;
}

/** One JSON line per thread, then a summary line: easy to read, easy to feed to `jq`. */
export function formatRetentionReport(report: RetentionReport): string[] {
  const action = report.dryRun ? 'would_remove' : 'removed';
  return [
    ...report.threads.map((thread) => JSON.stringify({ action, thread })),
    JSON.stringify({
      action: 'summary',
      dryRun: report.dryRun,
      days: report.days,
      cutoff: new Date(report.cutoffMs).toISOString(),
      [report.dryRun ? 'wouldRemove' : 'removed']: report.threads.length,
      [report.dryRun ? 'wouldExpireRecords' : 'expiredRecords']: report.records,
    }),
  ];
}
