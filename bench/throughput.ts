import PQueue from 'p-queue';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { FakeOpenAI } from '../test/fakes/fake-openai.js';
import { FakeSlack } from '../test/fakes/fake-slack.js';
import { startBot } from '../test/helpers/bot-process.js';
import { mentionEvent, mentionText, nextMessageTs, postEvent } from '../test/helpers/slack-events.js';
import { BOT_TOKEN, BOT_USER, OPENAI_KEY, SIGNING_SECRET, stepsModel, TEAM } from './fixtures.js';
import { MB, sampleMemory, timed } from './measure.js';
import type { FigureRow } from './report.js';
import { jailedSandbox } from './local-step.js';

/**
 * Figure 4: many threads at once through the real bot process and the local sandbox.
 *
 * Method: a bot process (`npm start`'s command via startBot, defaults: local sandbox with bubblewrap
 * when usable, STATUS_INTERVAL_MS=2000, LOG_LEVEL=INFO) gets `threads` mentions at once, each in its
 * own thread and each asking the instant model for 3 steps of real Python (`x = i; print(x)`).
 * Wall time runs from the first POST to the last answer reaching FakeSlack; turns/s = threads / wall.
 * Memory: the bot's RSS is sampled from /proc/<pid>/status every 20 ms (and the kernel's VmHWM,
 * reset just before, catches peaks between samples); its baseline is the same process's RSS when idle,
 * just before the burst. Baseline for the wall time, same run: the same 3-step threads run straight
 * through a LocalSandbox in the bench process with the same concurrency (no Slack, model or
 * history): the floor set by Python itself. Done for MAX_CONCURRENT_TURNS in `concurrency`.
 */

export interface ThroughputOptions {
  threads: number;
  stepsPerTurn: number;
  concurrency: number[];
}

interface ConcurrencyFigures {
  maxConcurrentTurns: number;
  wallSeconds: number;
  turnsPerSecond: number;
  directWallSeconds: number;
  idleRssMb: number;
  peakRssMb: number;
  kernelPeak: boolean;
}

async function runBot(maxConcurrentTurns: number, options: ThroughputOptions) {
  const slack = await new FakeSlack({ botToken: BOT_TOKEN, botUserId: BOT_USER, teamId: TEAM }).start();
  const ai = await new FakeOpenAI({ apiKey: OPENAI_KEY }).start();
  ai.script(stepsModel);
  const bot = await startBot({
    slackApiUrl: slack.apiUrl,
    openaiBaseUrl: ai.baseUrl,
    env: { MAX_CONCURRENT_TURNS: String(maxConcurrentTurns), STATUS_INTERVAL_MS: '2000', LOG_LEVEL: 'INFO' },
  });
  try {
    const text = mentionText(BOT_USER, `run ${options.stepsPerTurn}: x = {i}; print(x)`);
    // One warm-up turn: the sandbox's first step and the JIT are not part of the figure.
    const warmUp = nextMessageTs();
    await postEvent(bot.eventsUrl, SIGNING_SECRET, mentionEvent({ channel: 'C1', user: 'U1', ts: warmUp, text }));
    await slack.waitFor((fake) => fake.botMessagesIn('C1', warmUp).some((message) => (message.text ?? '').startsWith('Done')), 60_000);
    // Idle again once the warm-up turn made its last call (clearing the "is working" status).
    await slack.waitFor(
      (fake) => fake.callsTo('assistant.threads.setStatus').some((call) => call.args.thread_ts === warmUp && call.args.status === ''),
      30_000,
    );
    const threads = Array.from({ length: options.threads }, () => nextMessageTs());
    const memory = sampleMemory(bot.child.pid!);
    const { ms } = await timed(async () => {
      const posted = await Promise.all(
        threads.map((ts) => postEvent(bot.eventsUrl, SIGNING_SECRET, mentionEvent({ channel: 'C1', user: 'U1', ts, text }))),
      );
      if (posted.some((result) => result.status !== 200)) throw new Error('throughput: a mention was not acknowledged');
      await slack.waitFor(
        (fake) => threads.every((ts) => fake.botMessagesIn('C1', ts).some((message) => (message.text ?? '').startsWith('Done'))),
        600_000,
      );
    });
    const { startRss, peakRss, kernelPeak } = memory.stop();
    const answers = threads.map((ts) => slack.botMessagesIn('C1', ts).find((message) => (message.text ?? '').startsWith('Done'))?.text);
    if (!answers.every((answer) => answer?.includes(String(options.stepsPerTurn)))) throw new Error('throughput: a turn did not run all its steps');
    return { wallSeconds: ms / 1000, idleRssMb: startRss / MB, peakRssMb: peakRss / MB, kernelPeak };
  } finally {
    await bot.stop();
    await Promise.all([slack.close(), ai.close()]);
  }
}

/** The floor: the same threads' steps straight through LocalSandbox, `concurrency` threads at a time. */
async function runDirect(concurrency: number, options: ThroughputOptions, dataDir: string): Promise<number> {
  const sandbox = jailedSandbox();
  const store = new LocalWorkspaceStore(dataDir);
  const queue = new PQueue({ concurrency });
  const thread = async () => {
    const session = sandbox.session(store.open({ team: TEAM, channel: 'C1', threadTs: nextMessageTs() }));
    for (let step = 1; step <= options.stepsPerTurn; step++) {
      const result = await session.run({ language: 'python', code: `x = ${step}; print(x)`, timeoutSec: 60 });
      if (result.error !== null) throw new Error(`throughput baseline: ${result.error.value}`);
    }
  };
  await thread(); // warm-up
  const { ms } = await timed(() => Promise.all(Array.from({ length: options.threads }, () => queue.add(thread))));
  await sandbox.close();
  return ms / 1000;
}

export async function throughputBenchmark(options: ThroughputOptions, dataDir: string): Promise<{ rows: FigureRow[]; details: unknown }> {
  const results: ConcurrencyFigures[] = [];
  for (const maxConcurrentTurns of options.concurrency) {
    const directWallSeconds = await runDirect(maxConcurrentTurns, options, dataDir);
    const bot = await runBot(maxConcurrentTurns, options);
    results.push({ maxConcurrentTurns, ...bot, directWallSeconds, turnsPerSecond: options.threads / bot.wallSeconds });
  }
  const figure = '4 throughput';
  const label = `${options.threads}x${options.stepsPerTurn} steps`;
  const rows: FigureRow[] = results.flatMap((result) => [
    {
      key: `throughput.wall.${result.maxConcurrentTurns}`,
      figure,
      measure: `wall s, ${label}, ${result.maxConcurrentTurns} at once`,
      ours: result.wallSeconds,
      baseline: result.directWallSeconds,
      baselineName: 'LocalSandbox alone',
    },
    {
      key: `throughput.turnsPerSecond.${result.maxConcurrentTurns}`,
      figure,
      measure: `turns/s, ${result.maxConcurrentTurns} at once`,
      ours: result.turnsPerSecond,
      baseline: options.threads / result.directWallSeconds,
      baselineName: 'LocalSandbox alone',
    },
    {
      key: `throughput.peakRss.${result.maxConcurrentTurns}`,
      figure,
      measure: `bot peak RSS MB, ${result.maxConcurrentTurns} at once`,
      ours: result.peakRssMb,
      baseline: result.idleRssMb,
      baselineName: 'idle bot',
    },
  ]);
  return { rows, details: { ...options, results } };
}
