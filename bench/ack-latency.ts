import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FakeOpenAI } from '../test/fakes/fake-openai.js';
import { FakeSlack } from '../test/fakes/fake-slack.js';
import { startBot } from '../test/helpers/bot-process.js';
import { mentionEvent, mentionText, nextMessageTs } from '../test/helpers/slack-events.js';
import { BOT_TOKEN, BOT_USER, OPENAI_KEY, SIGNING_SECRET, stepsModel, TEAM } from './fixtures.js';
import type { BurstRequest, BurstResult } from './load-generator.js';
import { median, percentile } from './measure.js';
import type { FigureRow } from './report.js';

/**
 * Figure 1: time from a signed Events API POST to its HTTP 200, with `inFlight` mentions posted at
 * once, for the real bot against a bare Bolt app.
 *
 * Method: both are child processes started the same way (`node --import tsx`, same environment
 * variables, same FakeSlack for auth.test): the bot is `npm start`'s controller/main.ts with its
 * defaults (local sandbox, bubblewrap when usable, STATUS_INTERVAL_MS=2000, LOG_LEVEL=INFO); the
 * baseline is bench/bare-bolt-app.ts (createSlackApp + an app_mention listener that does nothing).
 * A third process (bench/load-generator.ts) posts the bursts and holds the clock. Rounds alternate
 * (bare, bot, bot, bare, ...); each bot mention is a full turn (`run 1: ...`: one model call, one
 * real Python step, the answer), and the next round starts only once every turn of the round has
 * answered, so later acks of a burst compete with the turns that earlier ones started. p50 / p99 are
 * over all acks of all rounds of one side.
 */

export interface AckLatencyOptions {
  rounds: number;
  inFlight: number;
}

interface ServerProcess {
  eventsUrl: string;
  pid: number;
  stop: () => Promise<unknown>;
}

/** The baseline: bench/bare-bolt-app.ts, started exactly like the bot (same helper, same variables). */
async function startBareBolt(slackApiUrl: string, openaiBaseUrl: string): Promise<ServerProcess> {
  const started = await startBot({ slackApiUrl, openaiBaseUrl, entry: 'bench/bare-bolt-app.ts' });
  return { eventsUrl: started.eventsUrl, pid: started.child.pid!, stop: started.stop };
}

/** The load generator process and a function that posts one burst through it. */
function startLoadGenerator(): { burst: (url: string, events: Record<string, unknown>[]) => Promise<BurstResult['results']>; stop: () => void } {
  const child = fork(fileURLToPath(new URL('./load-generator.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let nextId = 0;
  const pending = new Map<number, (results: BurstResult['results']) => void>();
  child.on('message', (message: BurstResult) => pending.get(message.id)?.(message.results));
  return {
    burst: (url, events) =>
      new Promise((resolve) => {
        const id = ++nextId;
        pending.set(id, resolve);
        child.send({ id, url, signingSecret: SIGNING_SECRET, events } satisfies BurstRequest);
      }),
    stop: () => child.disconnect(),
  };
}

export async function ackLatencyBenchmark(options: AckLatencyOptions): Promise<{ rows: FigureRow[]; details: unknown }> {
  const slack = await new FakeSlack({ botToken: BOT_TOKEN, botUserId: BOT_USER, teamId: TEAM }).start();
  const ai = await new FakeOpenAI({ apiKey: OPENAI_KEY }).start();
  ai.script(stepsModel);
  const generator = startLoadGenerator();
  const servers: ServerProcess[] = [];
  try {
    const [bare, bot] = await Promise.all([
      startBareBolt(slack.apiUrl, ai.baseUrl).then((server) => (servers.push(server), server)),
      startBot({ slackApiUrl: slack.apiUrl, openaiBaseUrl: ai.baseUrl, env: { STATUS_INTERVAL_MS: '2000', LOG_LEVEL: 'INFO' } }).then((started) => {
        const server: ServerProcess = { eventsUrl: started.eventsUrl, pid: started.child.pid!, stop: started.stop };
        servers.push(server);
        return server;
      }),
    ]);

    const latencies = { bare: [] as number[], bot: [] as number[] };
    const roundMedians = { bare: [] as number[], bot: [] as number[] };
    let failures = 0;
    const round = async (side: 'bare' | 'bot', measured: boolean) => {
      const threads = Array.from({ length: options.inFlight }, () => nextMessageTs());
      const events = threads.map((ts, index) =>
        mentionEvent({ channel: 'C1', user: 'U1', ts, text: mentionText(BOT_USER, `run 1: print(${index})`) }),
      );
      const results = await generator.burst(side === 'bare' ? bare.eventsUrl : bot.eventsUrl, events);
      failures += results.filter((result) => result.status !== 200).length;
      if (measured) {
        latencies[side].push(...results.map((result) => result.elapsedMs));
        roundMedians[side].push(median(results.map((result) => result.elapsedMs)));
      }
      if (side === 'bot') {
        // Every turn of the round answers before the next round starts.
        await slack.waitFor(
          (fake) => threads.every((ts) => fake.botMessagesIn('C1', ts).some((message) => (message.text ?? '').startsWith('Done'))),
          120_000,
        );
      }
    };
    // One unmeasured round each warms up both processes (JIT, sockets, the sandbox's first step).
    await round('bare', false);
    await round('bot', false);
    for (let index = 0; index < options.rounds; index++) {
      const order: Array<'bare' | 'bot'> = index % 2 === 0 ? ['bare', 'bot'] : ['bot', 'bare'];
      for (const side of order) await round(side, true);
    }
    if (failures > 0) throw new Error(`ack latency: ${failures} requests were not answered 200`);

    const figure = '1 ack latency';
    const summary = (side: 'bare' | 'bot') => ({ p50: percentile(latencies[side], 0.5), p99: percentile(latencies[side], 0.99) });
    const ours = summary('bot');
    const baseline = summary('bare');
    const rows: FigureRow[] = [
      { key: 'ack.p50', figure, measure: `p50 ms, ${options.inFlight} in flight`, ours: ours.p50, baseline: baseline.p50, baselineName: 'bare Bolt' },
      { key: 'ack.p99', figure, measure: `p99 ms, ${options.inFlight} in flight`, ours: ours.p99, baseline: baseline.p99, baselineName: 'bare Bolt' },
    ];
    for (const row of rows) {
      row.target = '<= 1.2x';
      row.met = row.ours <= 1.2 * row.baseline!;
    }
    return {
      rows,
      details: {
        rounds: options.rounds,
        inFlight: options.inFlight,
        acks: latencies.bot.length,
        bot: ours,
        bare: baseline,
        /** Median over rounds of (bot round p50 / the adjacent bare round p50): less sensitive to drift. */
        pairedRoundRatio: median(roundMedians.bot.map((value, index) => value / roundMedians.bare[index]!)),
        turnsAnswered: options.inFlight * (options.rounds + 1),
      },
    };
  } finally {
    generator.stop();
    for (const server of servers.reverse()) await server.stop();
    await Promise.all([slack.close(), ai.close()]);
  }
}
