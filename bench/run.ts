/**
 * `npm run bench`: measures the bot's speed and footprint, each figure beside its baseline measured in
 * the same run, prints one table, writes bench/results/latest.json and compares with
 * bench/results/baseline.json when present. Nothing here is asserted: machines are noisy; read the
 * ratios. Method of each figure: the comment at the top of its file; summary: bench/README.md.
 *
 *   npm run bench                      full run (a few minutes on 2 cores)
 *   npm run bench -- --quick           smaller sizes, for a smoke run
 *   npm run bench -- --only=ack,steps  some figures (ack, steps, local, throughput, upload, history, sessions, jail, cloud, store)
 *   npm run bench -- --out=FILE        write the results there instead of bench/results/latest.json
 *   npm run bench -- --save-baseline   also write them to bench/results/baseline.json
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ackLatencyBenchmark } from './ack-latency.js';
import { cloudSessionsBenchmark } from './cloud-sessions.js';
import { historyGrowthBenchmark } from './history-growth.js';
import { jailProtectionsBenchmark } from './jail-protections.js';
import { localSessionsBenchmark } from './local-sessions.js';
import { localStepBenchmark } from './local-step.js';
import { formatTable, readPreviousRows, writeResults, type BenchResults, type FigureRow } from './report.js';
import { stepOverheadBenchmark } from './step-overhead.js';
import { storeCostBenchmark } from './store-cost.js';
import { throughputBenchmark } from './throughput.js';
import { uploadMemoryBenchmark } from './upload-memory.js';

const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
const FIGURE_NAMES = ['upload', 'history', 'steps', 'store', 'local', 'ack', 'throughput', 'sessions', 'jail', 'cloud'] as const;
type FigureName = (typeof FIGURE_NAMES)[number];

interface Arguments {
  quick: boolean;
  only: Set<FigureName>;
  out: string;
  saveBaseline: boolean;
}

function parseArguments(argv: string[]): Arguments {
  const value = (name: string) => argv.find((argument) => argument.startsWith(`--${name}=`))?.slice(name.length + 3);
  const only = value('only')?.split(',').map((name) => name.trim()) ?? [...FIGURE_NAMES];
  const unknown = only.filter((name) => !(FIGURE_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0) throw new Error(`unknown figure(s) ${unknown.join(', ')}: choose from ${FIGURE_NAMES.join(', ')}`);
  return {
    quick: argv.includes('--quick'),
    only: new Set(only as FigureName[]),
    out: value('out') ?? join(RESULTS_DIR, 'latest.json'),
    saveBaseline: argv.includes('--save-baseline'),
  };
}

/** Sizes of each figure; the quick ones keep a smoke run short, the full ones steady enough to compare. */
function plan(quick: boolean) {
  return {
    ack: quick ? { rounds: 1, inFlight: 8 } : { rounds: 8, inFlight: 50 },
    steps: quick ? { steps: 10, repetitions: 1 } : { steps: 50, repetitions: 7 },
    store: quick ? { turns: 4 } : { turns: 40 },
    local: quick ? { repetitions: 2, files: 200 } : { repetitions: 11, files: 1000 },
    throughput: quick ? { threads: 8, stepsPerTurn: 3, concurrency: [8] } : { threads: 100, stepsPerTurn: 3, concurrency: [8, 16] },
    upload: { fileMb: quick ? 20 : 500 },
    history: quick ? { repetitions: 2, sizes: [10, 100, 1000] } : { repetitions: 9, sizes: [10, 100, 1000] },
    sessions: quick ? { repetitions: 1, threads: 2, quick: true } : { repetitions: 7, threads: 50 },
    jail: quick ? { repetitions: 2 } : { repetitions: 15 },
    // Cloud Run: 8 s from runJob to the container (the published figure), a model that answers in 2 s.
    cloud: quick ? { repetitions: 1, startMs: 800, modelMs: 200 } : { repetitions: 3, startMs: 8_000, modelMs: 2_000 },
  };
}

function environment(): Record<string, string | number> {
  let python = 'unknown';
  try {
    python = execFileSync('/usr/bin/python3', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    // not installed: the local figures will say so
  }
  return { node: process.version, platform: `${process.platform} ${process.arch}`, cpus: cpus().length, memoryGb: Math.round(totalmem() / 2 ** 30), python };
}

async function main(): Promise<void> {
  const args = parseArguments(process.argv.slice(2));
  const sizes = plan(args.quick);
  // Warnings (e.g. MaxListenersExceededWarning) are counted and reported once instead of interleaved.
  const warnings = new Map<string, number>();
  process.removeAllListeners('warning');
  process.on('warning', (warning) => warnings.set(warning.name, (warnings.get(warning.name) ?? 0) + 1));

  const dataDir = await mkdtemp(join(tmpdir(), 'oi-bench-run-'));
  const rows: FigureRow[] = [];
  const details: Record<string, unknown> = {};
  const failures: string[] = [];
  const started = performance.now();
  // Order of execution: the in-process memory figure first, while this process is still small.
  const figures: Record<FigureName, () => Promise<{ rows: FigureRow[]; details: unknown }>> = {
    upload: async () => {
      const upload = await uploadMemoryBenchmark(sizes.upload);
      return {
        rows: [
          {
            key: 'upload.rssGrowth',
            figure: '4 upload memory',
            measure: `RSS growth MB, ${upload.fileMb} MB upload`,
            ours: upload.ingestGrowthMb,
            baseline: upload.baselineGrowthMb,
            baselineName: 'fetch, bytes dropped',
            target: '< 50 MB',
            met: upload.withinTarget,
          },
        ],
        details: upload,
      };
    },
    history: () => historyGrowthBenchmark(sizes.history),
    steps: () => stepOverheadBenchmark(sizes.steps),
    store: () => storeCostBenchmark(sizes.store),
    local: () => localStepBenchmark(sizes.local),
    ack: () => ackLatencyBenchmark(sizes.ack),
    throughput: () => throughputBenchmark(sizes.throughput, dataDir),
    sessions: () => localSessionsBenchmark(sizes.sessions),
    jail: () => jailProtectionsBenchmark(sizes.jail),
    cloud: () => cloudSessionsBenchmark(sizes.cloud),
  };
  try {
    for (const name of FIGURE_NAMES) {
      if (!args.only.has(name)) continue;
      const figureStarted = performance.now();
      process.stderr.write(`bench: ${name}…`);
      try {
        const result = await figures[name]();
        rows.push(...result.rows);
        details[name] = result.details;
        process.stderr.write(` ${((performance.now() - figureStarted) / 1000).toFixed(1)} s\n`);
      } catch (error) {
        failures.push(`${name}: ${error instanceof Error ? error.message : String(error)}`);
        process.stderr.write(' FAILED\n');
      }
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }

  rows.sort((a, b) => a.figure.localeCompare(b.figure, 'en', { numeric: true }));
  const baselinePath = join(RESULTS_DIR, 'baseline.json');
  const previous = readPreviousRows(baselinePath);
  const results: BenchResults = {
    version: 1,
    startedAt: new Date(Date.now() - (performance.now() - started)).toISOString(),
    quick: args.quick,
    environment: { ...environment(), seconds: Math.round((performance.now() - started) / 1000) },
    rows,
    details: { ...details, warnings: Object.fromEntries(warnings) },
  };
  console.log(formatTable(rows, previous?.rows));
  if (previous !== undefined && previous.quick !== args.quick) {
    console.log(`(vs baseline.json: that file is a ${previous.quick ? 'quick' : 'full'} run, this one is ${args.quick ? 'quick' : 'full'}: sizes differ)`);
  }
  for (const [name, count] of warnings) console.log(`warnings: ${count}x ${name} (see bench/README.md)`);
  writeResults(args.out, results);
  if (args.saveBaseline) writeResults(baselinePath, results);
  console.log(`results: ${args.out}${args.saveBaseline ? ` and ${baselinePath}` : ''} (${results.environment.seconds} s)`);
  if (failures.length > 0) {
    for (const failure of failures) console.error(`bench failed: ${failure}`);
    process.exitCode = 1;
  }
}

await main();
