import { open, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { appendHistory, estimateTokens, HISTORY_STATE, loadHistory, toModelMessages, type HistoryMessage } from '../controller/agent/history.js';
import type { LocalWorkspace } from '../controller/workspace/local-workspace.js';
import { answerTime, InstantSandbox, startInProcessBot } from './fixtures.js';
import { median, timed } from './measure.js';
import type { FigureRow } from './report.js';

/**
 * Figure 5: the cost of a thread's history as it grows, and the size of the model's request.
 *
 * Method: a LocalWorkspace is seeded with T synthetic turns (user question, execute call with ~300
 * characters of code, a tool result of ~1,500 characters with its notebook metadata, a ~400-character
 * answer: about 2.7 KB of JSON a turn) for T = 10, 100, 1,000. For each T, medians over repetitions of:
 * loadHistory; appendHistory of one more turn (read, version check, write, fsync, rename); and
 * toModelMessages with CONTEXT_TOKEN_BUDGET (done before every model call). Baselines: the same
 * bytes read and JSON.parse'd, and JSON.stringify'd, written, fsync'd and renamed, with plain fs
 * calls (the floor of any JSON-file store). Growth: load+save ms per KB of history at 1,000 turns
 * against 100 turns (a ratio near 1 means the cost grows with the size, not faster).
 * Context: an in-process Bot (instant model, InstantSandbox) runs one real turn of one step in the
 * 1,000-turn thread; the request the fake model received is estimated (4 characters a token, as the
 * trimming does) without the system prompt and compared with CONTEXT_TOKEN_BUDGET; the turn must be
 * answered. The same turn in an empty thread is its baseline for the time to the answer (medians of
 * up to 3 pairs).
 */

export interface HistoryGrowthOptions {
  repetitions: number;
  sizes: number[];
}

const CODE = [
  "import pandas as pd",
  "df = pd.read_csv('sales.csv', parse_dates=['date'])",
  "monthly = df.groupby([df['date'].dt.to_period('M'), 'region'])['amount'].sum().unstack()",
  "print(monthly.tail(12).round(1).to_string())",
  "monthly.plot(kind='bar', figsize=(10, 4)); plt.show()",
].join('\n');
const OUTPUT = Array.from({ length: 14 }, (_, row) => `2024-${String((row % 12) + 1).padStart(2, '0')}   ${(1000 + row * 37.5).toFixed(1).padStart(9)}   ${(800 + row * 12.25).toFixed(1).padStart(9)}   ${(450 + row * 3).toFixed(1).padStart(9)}`).join('\n');
const ANSWER = 'Sales grew in every region over the last twelve months. **East** leads with the largest total, **West** grew fastest (+18 % year on year), and **North** is flat. The chart `figure_1.png` shows the monthly totals by region; the table above has the exact numbers. Ask me to break it down by product if you want the drivers behind the growth.';

export function syntheticTurn(index: number): HistoryMessage[] {
  const callId = `call_${index}`;
  const stdout = `region        east       west      north\n${OUTPUT}\n`;
  return [
    { role: 'user', content: `Question ${index}: how did monthly sales by region develop over the last year? Please show a chart too.`, meta: { ts: `1700000000.${index}`, user: 'U1' } },
    { role: 'assistant', content: null, tool_calls: [{ id: callId, type: 'function', function: { name: 'execute', arguments: JSON.stringify({ language: 'python', code: CODE }) } }] },
    {
      role: 'tool',
      tool_call_id: callId,
      content: `${stdout}[figures shown to the user] figure_1.png`,
      meta: { step: { code: CODE, stdout, stderr: '', error: null, figures: ['figure_1.png'], durationMs: 850 } },
    },
    { role: 'assistant', content: ANSWER, meta: { ts: `1700000001.${index}` } },
  ];
}

/** The floor: read + parse, and stringify + write + fsync + rename of the same state file. */
async function rawLoad(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8'));
}

async function rawSave(path: string, value: unknown): Promise<void> {
  const temporary = `${path}.raw.tmp`;
  const handle = await open(temporary, 'w');
  try {
    await handle.writeFile(JSON.stringify(value));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, `${path}.raw`);
}

interface SizeFigures {
  turns: number;
  kilobytes: number;
  loadMs: number;
  saveMs: number;
  rawLoadMs: number;
  rawSaveMs: number;
  contextMs: number;
  msPerKb: number;
}

export async function historyGrowthBenchmark(options: HistoryGrowthOptions): Promise<{ rows: FigureRow[]; details: unknown }> {
  const harness = await startInProcessBot({ sandbox: new InstantSandbox() });
  try {
    const budget = harness.config.limits.contextTokenBudget;
    const sizes: SizeFigures[] = [];
    for (const turns of options.sizes) {
      const workspace = harness.store.open({ team: 'T1', channel: 'C1', threadTs: `1700000100.${String(turns).padStart(6, '0')}` }) as LocalWorkspace;
      const history = Array.from({ length: turns }, (_, index) => syntheticTurn(index)).flat();
      await workspace.writeState(HISTORY_STATE, history, null);
      const path = join(workspace.stateDir, `${HISTORY_STATE}.json`);
      const kilobytes = (await stat(path)).size / 1024;
      const samples = { load: [] as number[], save: [] as number[], rawLoad: [] as number[], rawSave: [] as number[], context: [] as number[] };
      for (let repetition = 0; repetition <= options.repetitions; repetition++) {
        // Each measure runs beside its baseline, in alternating order (garbage left by one is not always
        // collected during the same one).
        const ourFirst = repetition % 2 === 0;
        const pair = async <A, B>(ours: () => Promise<A>, floor: () => Promise<B>) => {
          if (ourFirst) return { ours: await timed(ours), floor: await timed(floor) };
          const floorTimed = await timed(floor);
          return { ours: await timed(ours), floor: floorTimed };
        };
        const loads = await pair(() => loadHistory(workspace), () => rawLoad(path));
        const saves = await pair(() => appendHistory(workspace, syntheticTurn(turns + repetition)), () => rawSave(path, loads.floor.value));
        const load = loads.ours;
        const save = saves.ours;
        const raw = loads.floor;
        const rawWrite = saves.floor;
        const context = await timed(async () => toModelMessages(load.value, budget));
        if (repetition === 0) continue; // warm-up
        samples.load.push(load.ms);
        samples.save.push(save.ms);
        samples.rawLoad.push(raw.ms);
        samples.rawSave.push(rawWrite.ms);
        samples.context.push(context.ms);
      }
      const loadMs = median(samples.load);
      const saveMs = median(samples.save);
      sizes.push({
        turns,
        kilobytes,
        loadMs,
        saveMs,
        rawLoadMs: median(samples.rawLoad),
        rawSaveMs: median(samples.rawSave),
        contextMs: median(samples.context),
        msPerKb: (loadMs + saveMs) / kilobytes,
      });
    }
    const context = await contextOfLongThread(harness, Math.max(...options.sizes), Math.min(3, options.repetitions));
    return { rows: buildRows(sizes, context, budget), details: { sizes, context, budget } };
  } finally {
    await harness.bot.drain();
    await harness.close();
  }
}

/**
 * Real turns (one step each) in threads of `turns` turns and in empty threads, alternating; medians.
 * At most 7 turns: each holds a MAX_CONCURRENT_TURNS slot (default 8) until its final status edit.
 */
async function contextOfLongThread(harness: Awaited<ReturnType<typeof startInProcessBot>>, turns: number, repetitions: number) {
  const { ai, slack, store } = harness;
  const history = Array.from({ length: turns }, (_, index) => syntheticTurn(index)).flat();
  // The final status edits wait for STATUS_INTERVAL_MS; they are awaited together at the end.
  const pending = [(await answerTime(harness, harness.mention('run 1: print(1)'))).finished]; // warm-up
  const emptyMs: number[] = [];
  const longMs: number[] = [];
  const tokens: number[] = [];
  let answered = true;
  let lastRequest: Array<{ role: string; content?: unknown }> = [];
  for (let repetition = 0; repetition < repetitions; repetition++) {
    const longThread = harness.mention('run 1: print(1)');
    await store.open(longThread.key).writeState(HISTORY_STATE, history, null);
    const empty = await answerTime(harness, harness.mention('run 1: print(1)'));
    const requestsBefore = ai.requests.length;
    const long = await answerTime(harness, longThread);
    const requests = ai.requests.slice(requestsBefore);
    pending.push(empty.finished, long.finished);
    emptyMs.push(empty.ms);
    longMs.push(long.ms);
    tokens.push(...requests.map((request) => estimateTokens(request.body.messages.filter((message) => message.role !== 'system') as never)));
    answered &&= slack.botMessagesIn('C1', longThread.key.threadTs).some((message) => (message.text ?? '').startsWith('Done'));
    lastRequest = requests.at(-1)?.body.messages ?? [];
  }
  await Promise.all(pending);
  return {
    turns,
    answered,
    emptyTurnMs: median(emptyMs),
    longTurnMs: median(longMs),
    maxRequestTokens: Math.max(...tokens),
    historyTokens: estimateTokens(history),
    userMessagesSent: lastRequest.filter((message) => message.role === 'user').length,
    trimmedToolOutputs: lastRequest.filter((message) => message.role === 'tool' && String(message.content).includes('were trimmed')).length,
  };
}

function buildRows(sizes: SizeFigures[], context: Awaited<ReturnType<typeof contextOfLongThread>>, budget: number): FigureRow[] {
  const figure = '5 history';
  const rows: FigureRow[] = [];
  for (const size of sizes) {
    const label = `${size.turns} turns (${Math.round(size.kilobytes)} KB)`;
    rows.push(
      { key: `history.load.${size.turns}`, figure, measure: `load ms, ${label}`, ours: size.loadMs, baseline: size.rawLoadMs, baselineName: 'read+parse' },
      { key: `history.save.${size.turns}`, figure, measure: `save ms, ${label}`, ours: size.saveMs, baseline: size.rawSaveMs, baselineName: 'write+fsync' },
      { key: `history.context.${size.turns}`, figure, measure: `toModelMessages ms, ${size.turns} turns`, ours: size.contextMs },
    );
  }
  const largest = sizes.at(-1)!;
  const middle = sizes.at(-2) ?? largest;
  rows.push(
    {
      key: 'history.msPerKb',
      figure,
      measure: `load+save ms/KB, ${largest.turns} vs ${middle.turns} turns`,
      ours: largest.msPerKb,
      baseline: middle.msPerKb,
      baselineName: `(${middle.turns} turns)`,
      target: '<= 1.5x (linear)',
      met: largest.msPerKb <= 1.5 * middle.msPerKb,
    },
    {
      key: 'history.requestTokens',
      figure,
      measure: `request tokens, ${context.turns}-turn thread (history ${context.historyTokens})`,
      ours: context.maxRequestTokens,
      baseline: budget,
      baselineName: 'CONTEXT_TOKEN_BUDGET',
      target: '<= budget, answered',
      met: context.maxRequestTokens <= budget && context.answered,
    },
    {
      key: 'history.turnMs',
      figure,
      measure: `turn ms to answer (1 step), ${context.turns}-turn thread`,
      ours: context.longTurnMs,
      baseline: context.emptyTurnMs,
      baselineName: 'new thread',
    },
  );
  return rows;
}
