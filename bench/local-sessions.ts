import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../controller/logger.js';
import { LocalSandbox } from '../controller/sandbox/local/local-sandbox.js';
import type { SandboxSession } from '../controller/sandbox/sandbox.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { median, MB, processMemory, timed } from './measure.js';
import type { FigureRow } from './report.js';

/**
 * Issue 13's local figures: warm sessions against today's one runner per step (SANDBOX_SESSION=off),
 * both in the same jail (the production default: bubblewrap, cgroup, egress namespace, seccomp).
 *   warm      print(1) in a thread holding `pd` and a 1,000-row DataFrame, its session already live
 *   per step  the same in a runner started for the step (it restores pd and the DataFrame first)
 *   floor     exec('print(1)') inside an already running Python (what no sandbox can beat)
 *   cold      the first step of a new thread as the turn sees it: the session is started when the turn
 *             begins (speculative start) and the model answers MODEL_MS later, as in the Cloud Run
 *             figure; the time from the model's answer to the step's result, against a one-step runner
 *             (which starts only then). `cold start` is the session's own start-up with no model time.
 *   memory    50 threads each having run a step, live sessions capped by SANDBOX_MAX_SESSIONS: the
 *             controller's RSS and the sum of the sandboxes' RSS
 * Medians over repetitions, variants interleaved.
 */

/** The model's first answer: what a speculative session start overlaps (the Cloud Run figure uses 2 s). */
const MODEL_MS = 2_000;
/** --quick: a shorter model answer, so the smoke run stays short (its figures are not meant to be read). */
const QUICK_MODEL_MS = 500;
const STATE_CODE = "import pandas as pd\ndf = pd.DataFrame({'a': range(1000), 'b': [str(i) for i in range(1000)]})";

function sandbox(session: boolean, maxSessions = 16): LocalSandbox {
  const options = { network: 'egress' as const, logger: silentLogger, searchPath: process.env.PATH, session, maxSessions };
  try {
    return new LocalSandbox({ ...options, isolation: 'required' });
  } catch {
    return new LocalSandbox({ ...options, isolation: 'off' });
  }
}

async function step(session: SandboxSession, code: string): Promise<number> {
  const { ms, value } = await timed(() => session.run({ language: 'python', code, timeoutSec: 120 }));
  if (value.error !== null) throw new Error(`session bench step: ${value.error.name}: ${value.error.value}`);
  return ms;
}

/** Microseconds of exec('print(1)') in a running interpreter (median of 200). */
function execFloorMs(): number {
  const script = "import time, statistics, io, contextlib\ng = {}\nsamples = []\nfor _ in range(200):\n    buffer = io.StringIO()\n    start = time.perf_counter()\n    with contextlib.redirect_stdout(buffer):\n        exec('print(1)', g)\n    samples.append(time.perf_counter() - start)\nprint(statistics.median(samples) * 1000)";
  return Number(spawnSync('/usr/bin/python3', ['-c', script], { encoding: 'utf8' }).stdout.trim());
}

/** Sum of the RSS of this process's runners (python in session mode, in one of its sandbox cgroups). */
async function runnersRss(): Promise<{ count: number; bytes: number }> {
  const ownGroups = `oi-sandbox-${process.pid}-`;
  let count = 0;
  let bytes = 0;
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const command = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (!command.startsWith('/usr/bin/python3\0') || !command.includes('\0--session\0')) continue;
    if (!(await readFile(`/proc/${name}/cgroup`, 'utf8').catch(() => '')).includes(ownGroups)) continue;
    count += 1;
    bytes += processMemory(Number(name))?.rss ?? 0;
  }
  return { count, bytes };
}

export async function localSessionsBenchmark(options: { repetitions: number; threads: number; quick?: boolean }): Promise<{ rows: FigureRow[]; details: unknown }> {
  const modelMs = options.quick ? QUICK_MODEL_MS : MODEL_MS;
  const dataDir = await mkdtemp(join(tmpdir(), 'oi-bench-sessions-'));
  const warm = sandbox(true);
  const perStep = sandbox(false);
  try {
    const store = new LocalWorkspaceStore(dataDir);
    let counter = 0;
    const thread = () => store.open({ team: 'T1', channel: 'C1', threadTs: `1700000500.${String(++counter).padStart(6, '0')}` });
    const warmSession = warm.session(thread());
    const perStepSession = perStep.session(thread());
    await step(warmSession, STATE_CODE);
    await step(perStepSession, STATE_CODE);
    const samples: Record<string, number[]> = { warm: [], perStep: [], coldSession: [], coldPerStep: [], coldStart: [] };
    const afterModel = async (session: SandboxSession) => {
      await new Promise((resolve) => setTimeout(resolve, modelMs));
      return step(session, 'print(1)');
    };
    for (let repetition = 0; repetition <= options.repetitions; repetition++) {
      const measured = {
        warm: await step(warmSession, 'print(1)'),
        perStep: await step(perStepSession, 'print(1)'),
        coldSession: await afterModel(warm.session(thread())),
        coldPerStep: await afterModel(perStep.session(thread())),
        coldStart: await step(warm.session(thread()), 'print(1)'),
      };
      if (repetition === 0) continue; // warms caches
      for (const [name, ms] of Object.entries(measured)) samples[name]!.push(ms);
    }
    const m = Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)])) as Record<string, number>;
    const floor = execFloorMs();
    const isolation = warm.describeIsolation();
    await Promise.all([warm.close(), perStep.close()]);
    const memory = await memoryWithManyThreads(options.threads);
    return { rows: rows(m, floor, memory, modelMs), details: { medianMs: m, floorMs: floor, memory, modelMs, isolation } };
  } finally {
    await Promise.all([warm.close(), perStep.close()]);
    await rm(dataDir, { recursive: true, force: true });
  }
}

async function memoryWithManyThreads(threads: number): Promise<{ threads: number; liveSessions: number; controllerRssMb: number; sandboxRssMb: number; runners: number }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'oi-bench-sessions-many-'));
  const many = sandbox(true);
  try {
    const store = new LocalWorkspaceStore(dataDir);
    for (let index = 0; index < threads; index++) {
      await step(many.session(store.open({ team: 'T1', channel: 'C2', threadTs: `1700000600.${String(index).padStart(6, '0')}` })), 'x = list(range(1000))');
    }
    const runners = await runnersRss();
    return {
      threads,
      liveSessions: many.liveSessions,
      controllerRssMb: process.memoryUsage().rss / MB,
      sandboxRssMb: runners.bytes / MB,
      runners: runners.count,
    };
  } finally {
    await many.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

function rows(m: Record<string, number>, floor: number, memory: Awaited<ReturnType<typeof memoryWithManyThreads>>, modelMs: number): FigureRow[] {
  const figure = '13 local sessions';
  const warmRatio = m.warm! / m.perStep!;
  const coldRatio = m.coldSession! / m.coldPerStep!;
  return [
    {
      key: 'sessions.warm',
      figure,
      measure: 'warm session: print(1) ms, thread holds pd + DataFrame',
      ours: m.warm!,
      baseline: m.perStep!,
      baselineName: 'runner per step',
      target: '<= 20 ms and <= 0.1x',
      met: m.warm! <= 20 && warmRatio <= 0.1,
    },
    { key: 'sessions.floor', figure, measure: 'session floor: bare exec(print(1)) ms in a live Python', ours: floor },
    {
      key: 'sessions.cold',
      figure,
      measure: `cold session: first step of a new thread ms, after a ${modelMs / 1000} s model answer`,
      ours: m.coldSession!,
      baseline: m.coldPerStep!,
      baselineName: 'runner per step',
      target: '<= 1.1x',
      met: coldRatio <= 1.1,
    },
    { key: 'sessions.coldStart', figure, measure: 'cold session start, no model time to overlap: first step ms', ours: m.coldStart!, baseline: m.coldPerStep!, baselineName: 'runner per step' },
    { key: 'sessions.controllerRss', figure, measure: `session memory: controller RSS MB, ${memory.threads} threads, ${memory.liveSessions} live sessions`, ours: memory.controllerRssMb },
    { key: 'sessions.sandboxRss', figure, measure: `session memory: sum of sandbox RSS MB, ${memory.runners} runners (SANDBOX_MAX_SESSIONS=16)`, ours: memory.sandboxRssMb },
  ];
}
