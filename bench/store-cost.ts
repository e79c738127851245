import { Storage } from '@google-cloud/storage';
import { silentLogger } from '../controller/logger.js';
import { GcsWorkspaceStore } from '../controller/workspace/gcs-workspace.js';
import type { WorkspaceStore } from '../controller/workspace/workspace.js';
import { FakeGcs, type RecordedRequest } from '../test/fakes/fake-gcs.js';
import { MemoryRecordStore } from '../test/helpers/memory-records.js';
import { InstantSandbox, startInProcessBot } from './fixtures.js';
import { median } from './measure.js';
import type { FigureRow } from './report.js';

/**
 * Figure 6: what coordinating several instances through the store (issue 15) costs a turn on GCS.
 *
 * Method: an in-process Bot (createBot, as main.ts composes it) on a GcsWorkspaceStore against FakeGcs (the real
 * @google-cloud/storage client on 127.0.0.1), with the instant model and InstantSandbox, runs `turns` turns of one
 * step one after the other: a first turn in a new thread, then a second turn in the same thread, and so on. For
 * each turn the GCS requests are counted from handleMention until the bot is drained (the lease released), and
 * the time is taken to the answer in Slack (what the user waits for) and to the release. Baseline, in the same
 * run: the same Bot and store with the coordination records kept in this process's memory instead
 * (test/helpers/memory-records.ts), which is what a single instance did before: de-duplication and the thread
 * queue in memory, no request. The difference is the store's cost per turn. The sweep (one list per
 * TURN_SWEEP_SEC per instance, whatever the load) is counted separately.
 */

export interface StoreCostOptions {
  turns: number;
}

interface SideFigures {
  requestsPerTurn: number;
  coordinationPerTurn: number;
  answerMs: number;
  releasedMs: number;
  /** Coordination requests of one turn by kind, e.g. `POST upload` (a create or replace), `DELETE`. */
  kinds: Record<string, number>;
}

const BUCKET = 'bench-store-cost';

function isCoordination(request: RecordedRequest): boolean {
  return (request.query.name ?? decodeURIComponent(request.path)).includes('coordination/');
}

interface TurnSample {
  requests: RecordedRequest[];
  answerMs: number;
  releasedMs: number;
}

/** One side of the figure: a Bot on the GCS store, its coordination records in GCS or in memory. */
async function startSide(gcs: FakeGcs, memory: boolean) {
  const gcsStore = new GcsWorkspaceStore({ storage: new Storage({ apiEndpoint: gcs.url, projectId: 'bench' }), bucket: BUCKET, logger: silentLogger });
  const records = memory ? new MemoryRecordStore() : gcsStore.records;
  const store: WorkspaceStore = { open: (key) => gcsStore.open(key), removeOlderThan: (ms, flags) => gcsStore.removeOlderThan(ms, flags), records };
  const harness = await startInProcessBot({ sandbox: new InstantSandbox(), store, env: { STATUS_INTERVAL_MS: '0' } });
  let followUp: string | undefined;
  let turns = 0;
  const turn = async (): Promise<TurnSample> => {
    // Every event of the Events API carries an event_id: both de-duplication records are made.
    const mention = { ...harness.mention('run 1: print({i})', followUp), eventId: `EvBENCH${memory ? 'M' : 'S'}${++turns}` };
    const answers = () => harness.slack.botMessagesIn('C1', mention.key.threadTs).filter((message) => (message.text ?? '').startsWith('Done')).length;
    const answered = answers();
    const before = gcs.requests.length;
    const started = performance.now();
    const finished = harness.bot.handleMention(mention);
    await harness.slack.waitFor(() => answers() > answered, 60_000);
    const answerMs = performance.now() - started;
    await finished;
    await harness.bot.drain();
    // A first turn in a new thread, then a second one in the same thread, and so on.
    followUp = followUp === undefined ? mention.key.threadTs : undefined;
    return { requests: gcs.requests.slice(before), answerMs, releasedMs: performance.now() - started };
  };
  return { turn, close: () => harness.close() };
}

function summarise(samples: TurnSample[]): SideFigures {
  const perTurn = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
  const kinds = new Map<string, number>();
  for (const request of samples.flatMap((sample) => sample.requests.filter(isCoordination))) {
    const kind = `${request.method} ${request.path.startsWith('/upload/') ? 'upload' : 'object'} ${request.status}`;
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  return {
    requestsPerTurn: perTurn(samples.map((sample) => sample.requests.length)),
    coordinationPerTurn: perTurn(samples.map((sample) => sample.requests.filter(isCoordination).length)),
    answerMs: median(samples.map((sample) => sample.answerMs)),
    releasedMs: median(samples.map((sample) => sample.releasedMs)),
    kinds: Object.fromEntries([...kinds].map(([kind, count]) => [kind, count / samples.length])),
  };
}

export async function storeCostBenchmark(options: StoreCostOptions): Promise<{ rows: FigureRow[]; details: unknown }> {
  const gcs = new FakeGcs([BUCKET]);
  await gcs.start();
  try {
    const sides = { before: await startSide(gcs, true), ours: await startSide(gcs, false) };
    const samples = { before: [] as TurnSample[], ours: [] as TurnSample[] };
    try {
      // Turn 0 of each side warms up the clients and the JIT; it is not counted. Sides alternate.
      for (let index = 0; index <= options.turns; index++) {
        for (const side of index % 2 === 0 ? (['before', 'ours'] as const) : (['ours', 'before'] as const)) {
          const sample = await sides[side].turn();
          if (index > 0) samples[side].push(sample);
        }
      }
    } finally {
      await Promise.all([sides.before.close(), sides.ours.close()]);
    }
    const before = summarise(samples.before);
    const ours = summarise(samples.ours);
    const figure = '6 store cost';
    const baselineName = 'coordination in memory';
    const extra = ours.requestsPerTurn - before.requestsPerTurn;
    const sweep = gcs.requests.length;
    await new GcsWorkspaceStore({ storage: new Storage({ apiEndpoint: gcs.url, projectId: 'bench' }), bucket: BUCKET, logger: silentLogger }).records.list('leases/');
    const rows: FigureRow[] = [
      { key: 'store.requests', figure, measure: 'GCS requests per turn (1 step)', ours: ours.requestsPerTurn, baseline: before.requestsPerTurn, baselineName, target: '<= 4 extra', met: extra <= 4 },
      { key: 'store.extra', figure, measure: 'extra GCS requests per turn', ours: extra, target: '<= 4', met: extra <= 4 },
      { key: 'store.answerMs', figure, measure: 'ms to the answer, per turn', ours: ours.answerMs, baseline: before.answerMs, baselineName },
      { key: 'store.releasedMs', figure, measure: 'ms to the lease released, per turn', ours: ours.releasedMs, baseline: before.releasedMs, baselineName },
    ];
    return { rows, details: { turns: options.turns, ours, before, sweepRequests: gcs.requests.length - sweep } };
  } finally {
    await gcs.close();
  }
}
