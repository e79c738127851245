/**
 * What the post-deploy check prints: one line per stage with its time on the controller's clock since the step was
 * asked for (`+t`) and its own duration, one line per check, the cleanup, and a count. docs/deploy.md step 9 reads
 * it from Cloud Logging; its stage times are what the benchmark's Cloud Run model is compared with (bench/README.md).
 */

export interface SmokeStage {
  name: string;
  /** Milliseconds since the step was asked for, when the stage ended; undefined when it was not observed. */
  atMs?: number;
  /** Milliseconds the stage itself took. */
  tookMs?: number;
  detail: string;
}

export interface SmokeCheck {
  name: string;
  outcome: 'pass' | 'fail' | 'skip';
  detail: string;
}

export interface SmokeReport {
  runId: string;
  stages: SmokeStage[];
  checks: SmokeCheck[];
  warnings: string[];
  cleanup: string;
}

const seconds = (ms: number | undefined, sign = '') => (ms === undefined ? '-' : `${sign}${(ms / 1000).toFixed(2)}s`);

export function formatSmokeReport(report: SmokeReport): string[] {
  const width = Math.max(...report.stages.map((stage) => stage.name.length), 5);
  const lines = [`smoke run ${report.runId}`, ...report.warnings.map((warning) => `warning: ${warning}`)];
  lines.push(`${'stage'.padEnd(width)}  ${'at'.padStart(9)}  ${'took'.padStart(8)}  detail`);
  for (const stage of report.stages) {
    lines.push(`${stage.name.padEnd(width)}  ${seconds(stage.atMs, '+').padStart(9)}  ${seconds(stage.tookMs).padStart(8)}  ${stage.detail}`);
  }
  for (const check of report.checks) lines.push(`${check.outcome.toUpperCase().padEnd(4)}  ${check.name}: ${check.detail}`);
  lines.push(`cleanup: ${report.cleanup}`);
  const count = (outcome: SmokeCheck['outcome']) => report.checks.filter((check) => check.outcome === outcome).length;
  lines.push(`${count('pass')} passed, ${count('fail')} failed, ${count('skip')} skipped`);
  return lines;
}

/** The exit status: 0 only when no check failed. */
export function smokeExitCode(report: SmokeReport): number {
  return report.checks.some((check) => check.outcome === 'fail') ? 1 : 0;
}
