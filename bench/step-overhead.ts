import { answerTime, InstantSandbox, startInProcessBot } from './fixtures.js';
import { median, timed } from './measure.js';
import type { FigureRow } from './report.js';

/**
 * Figure 2: the controller's own cost per step, and Slack Web API calls per step.
 *
 * Method: an in-process Bot (composed like main.ts, LocalWorkspaceStore in a temp dir) runs one turn
 * of N steps: the instant scripted model asks for `execute` N times, and InstantSandbox returns each
 * step at once, so the only work left is ours (agent loop, history trimming, status message, history
 * save) plus the HTTP round trips to the fakes. The turn is timed from handleMention to its answer
 * reaching FakeSlack (the final status edit, which waits for the edit interval, is not work). Baseline,
 * in the same repetition: every model request and every Slack call up to the answer, replayed one
 * after the other with the same clients against the same fakes (the cost of the wire alone). Our code per step = (turn - replay) / N. Replaying
 * serially over-counts the wire a little when status edits overlapped a model call (interval 0),
 * so the net figure is a lower bound there; the raw turn time per step is printed too.
 * Slack calls per step = calls the turn made / N, with the default STATUS_INTERVAL_MS=2000
 * (edits coalesced) beside STATUS_INTERVAL_MS=0 (no coalescing: an edit whenever the loop yields).
 */

export interface StepOverheadOptions {
  steps: number;
  repetitions: number;
}

interface IntervalFigures {
  intervalMs: number;
  turnMsPerStep: number;
  replayMsPerStep: number;
  overheadMsPerStep: number;
  slackCallsPerStep: number;
  slackCallsPerTurn: number;
  modelCallsPerTurn: number;
}

async function measureInterval(intervalMs: number, options: StepOverheadOptions): Promise<IntervalFigures> {
  const sandbox = new InstantSandbox();
  const harness = await startInProcessBot({
    sandbox,
    env: { MAX_STEPS_PER_TURN: String(options.steps), STATUS_INTERVAL_MS: String(intervalMs) },
  });
  const { bot, slack, ai, client, openai } = harness;
  try {
    const turn = [] as number[];
    const replay = [] as number[];
    const slackCalls = [] as number[];
    const modelCalls = [] as number[];
    // Repetition 0 warms up the JIT, sockets and files; it is not counted.
    for (let repetition = 0; repetition <= options.repetitions; repetition++) {
      const slackBefore = slack.calls.length;
      const modelBefore = ai.requests.length;
      const stepsBefore = sandbox.steps;
      const mention = harness.mention(`run ${options.steps}: x = {i}`);
      const { ms: turnMs, finished } = await answerTime(harness, mention);
      const isAnswer = (call: (typeof slack.calls)[number]) => call.method === 'chat.postMessage' && String(call.args.text).startsWith('Done');
      // Calls up to the answer are the turn's wire traffic; the final status edit may follow later.
      const answerIndex = slack.calls.findIndex((call, index) => index >= slackBefore && isAnswer(call));
      const wire = slack.calls.slice(slackBefore, answerIndex + 1);
      const requests = ai.requests.slice(modelBefore);
      await finished;
      const calls = slack.calls.slice(slackBefore);
      if (sandbox.steps - stepsBefore !== options.steps) {
        throw new Error(`step overhead: the turn ran ${sandbox.steps - stepsBefore} steps, not ${options.steps}`);
      }
      const { ms: replayMs } = await timed(async () => {
        for (const request of requests) await openai.chat.completions.create(request.body as never);
        for (const call of wire) await client.apiCall(call.method, call.args);
      });
      if (repetition === 0) continue;
      turn.push(turnMs);
      replay.push(replayMs);
      slackCalls.push(calls.length);
      modelCalls.push(requests.length);
    }
    const overhead = turn.map((ms, index) => (ms - replay[index]!) / options.steps);
    return {
      intervalMs,
      turnMsPerStep: median(turn) / options.steps,
      replayMsPerStep: median(replay) / options.steps,
      overheadMsPerStep: median(overhead),
      slackCallsPerStep: median(slackCalls) / options.steps,
      slackCallsPerTurn: median(slackCalls),
      modelCallsPerTurn: median(modelCalls),
    };
  } finally {
    await bot.drain();
    await harness.close();
  }
}

export async function stepOverheadBenchmark(options: StepOverheadOptions): Promise<{ rows: FigureRow[]; details: unknown }> {
  const coalesced = await measureInterval(2000, options);
  const immediate = await measureInterval(0, options);
  const figure = '2 step overhead';
  const rows: FigureRow[] = [];
  for (const figures of [coalesced, immediate]) {
    const suffix = `STATUS_INTERVAL_MS=${figures.intervalMs}`;
    rows.push(
      {
        key: `steps.turnPerStep.${figures.intervalMs}`,
        figure,
        measure: `turn ms/step, ${suffix}`,
        ours: figures.turnMsPerStep,
        baseline: figures.replayMsPerStep,
        baselineName: '(same calls replayed)',
      },
      {
        key: `steps.overheadPerStep.${figures.intervalMs}`,
        figure,
        measure: `our code ms/step, ${suffix}`,
        ours: figures.overheadMsPerStep,
        target: '< 10 ms',
        met: figures.overheadMsPerStep < 10,
      },
    );
  }
  rows.push({
    key: 'steps.slackCallsPerStep',
    figure,
    measure: 'Slack calls/step, 2000 vs 0 ms',
    ours: coalesced.slackCallsPerStep,
    baseline: immediate.slackCallsPerStep,
    baselineName: '(interval 0)',
    target: '< 1 (coalesced)',
    met: coalesced.slackCallsPerStep < 1,
  });
  return { rows, details: { steps: options.steps, repetitions: options.repetitions, intervals: [coalesced, immediate] } };
}
