import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BenchResults } from '../bench/report.js';
import { PROJECT_ROOT } from './helpers/bot-process.js';

// `npm run bench -- --quick` runs end to end and produces every figure with finite numbers. Times are
// never asserted (machines are noisy): only that each figure was measured.
test('the benchmark runs in --quick mode and produces every figure', { timeout: 120_000 }, async () => {
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
      child.once('exit', (exitCode) => resolve({ code: exitCode, output: text }));
    });
    assert.equal(code, 0, output);
    const results = JSON.parse(await readFile(out, 'utf8')) as BenchResults;
    assert.equal(results.quick, true);
    const figures = new Set(results.rows.map((row) => row.figure.split(' ')[0]));
    assert.deepEqual([...figures].sort(), ['1', '2', '3', '4', '5'], output);
    for (const key of ['ack.p50', 'ack.p99', 'steps.overheadPerStep.2000', 'steps.slackCallsPerStep', 'local.printPlain', 'throughput.turnsPerSecond.8', 'throughput.peakRss.8', 'upload.rssGrowth', 'history.save.1000', 'history.requestTokens']) {
      assert.ok(results.rows.some((row) => row.key === key), `row ${key} missing:\n${output}`);
    }
    for (const row of results.rows) {
      assert.ok(Number.isFinite(row.ours), `${row.key}: ${row.ours}`);
      if (row.baseline !== undefined) assert.ok(Number.isFinite(row.baseline), `${row.key} baseline: ${row.baseline}`);
    }
    assert.match(output, /figure\s+measure\s+ours\s+baseline\s+ratio/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
