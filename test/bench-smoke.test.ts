import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import type { BenchResults } from '../bench/report.js';
import { PROJECT_ROOT } from './helpers/bot-process.js';

// `npm run bench -- --quick` runs end to end and produces every figure with finite numbers. Times are
// never asserted (machines are noisy): only that each figure was measured.
test('the benchmark runs in --quick mode and produces every figure', { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oi-bench-smoke-'));
  try {
    const out = join(dir, 'results.json');
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--quick', `--out=${out}`], {
        cwd: PROJECT_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
      // Killed before the test's own timeout, so a slow or stuck run shows how far it got.
      const deadline = setTimeout(() => {
        text += '\n[bench-smoke: killed after 280 s]';
        child.kill('SIGKILL');
      }, 280_000);
      child.once('exit', (exitCode) => {
        clearTimeout(deadline);
        resolve({ code: exitCode, output: text });
      });
    });
    expect(code, output).toBe(0);
    const results = JSON.parse(await readFile(out, 'utf8')) as BenchResults;
    expect(results.quick).toBe(true);
    const figures = new Set(results.rows.map((row) => row.figure.split(' ')[0]));
    expect([...figures].sort(), output).toStrictEqual(['1', '13', '14', '2', '3', '4', '5', '6']);
    const keys = results.rows.map((row) => row.key);
    for (const key of ['ack.p50', 'ack.p99', 'steps.overheadPerStep.2000', 'steps.slackCallsPerStep', 'local.printPlain', 'throughput.turnsPerSecond.8', 'throughput.peakRss.8', 'upload.rssGrowth', 'history.save.1000', 'history.requestTokens', 'sessions.warm', 'sessions.cold', 'sessions.sandboxRss', 'jail.coldAdded', 'jail.warmStep', 'cloudSessions.turn', 'cloudSessions.firstStep', 'cloudSessions.warmStep', 'store.requests', 'store.extra']) {
      expect(keys, `row ${key} missing:\n${output}`).toContain(key);
    }
    for (const row of results.rows) {
      expect(Number.isFinite(row.ours), `${row.key}: ${row.ours}`).toBe(true);
      if (row.baseline !== undefined) expect(Number.isFinite(row.baseline), `${row.key} baseline: ${row.baseline}`).toBe(true);
    }
    expect(output).toMatch(/figure\s+measure\s+ours\s+baseline\s+ratio/);
    expect(output, 'issue 13: the Cloud Run figure is printed with the word session').toMatch(/13 Cloud Run sessions\s+session: 5-step turn/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
