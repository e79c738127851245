import { AppError } from '../errors.js';
import type { WorkspaceStore } from '../workspace/workspace.js';

/**
 * Retention (issue 7): remove the workspaces and histories of threads that have not changed for N
 * days. The command-line wrapper is retention-cli.ts; this file holds what can be tested without a
 * process: argument parsing and the run itself, against any WorkspaceStore.
 */

const DAY_MS = 24 * 60 * 60 * 1000;

export const RETENTION_USAGE = [
  'Usage: npm run retention -- [--days N] [--dry-run]',
  '  Removes the files and history of every thread not changed for N days.',
  '  --days N    age in days (default: RETENTION_DAYS)',
  '  --dry-run   list what would be removed, remove nothing',
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
}

export async function runRetention(
  store: WorkspaceStore,
  options: { days: number; dryRun: boolean; nowMs: number },
): Promise<RetentionReport> {
  const cutoffMs = options.nowMs - options.days * DAY_MS;
  const { removedThreads } = await store.removeOlderThan(cutoffMs, { dryRun: options.dryRun });
  return { days: options.days, dryRun: options.dryRun, cutoffMs, threads: removedThreads };
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
    }),
  ];
}
