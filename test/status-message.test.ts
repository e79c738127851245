/** The status message (slack/status-message.ts, status-render.ts): what it shows while a turn runs and after. */
import { describe, expect, test, vi } from 'vitest';
import { silentLogger } from '../controller/logger.js';
import type { StepResult } from '../controller/sandbox/sandbox.js';
import { StatusMessage } from '../controller/slack/status-message.js';
import { renderSteps, type StepView } from '../controller/slack/status-render.js';
import { RecordingSlackThread, stopButtonValue } from './helpers/recording-slack-thread.js';

const result = (overrides: Partial<StepResult>): StepResult => ({
  stepId: 's',
  exitCode: 0,
  stdout: '',
  stderr: '',
  outputTruncated: false,
  error: null,
  durationMs: 1234,
  figures: [],
  files: [],
  unsaved: [],
  notes: [],
  ...overrides,
});
const step = (index: number, overrides: Partial<StepView> = {}): StepView => ({ index, title: `Step ${index}`, code: `print(${index})`, language: 'python', startedAt: 0, ...overrides });
const blockTexts = (blocks: unknown[] | undefined) => (blocks ?? []).map((block) => (block as { text?: { text: string } }).text?.text ?? '').join('\n');

describe('status rendering', () => {
  test('a finished step shows its icon, title, duration, code and the tail of its output', () => {
    const text = renderSteps([step(1, { code: 'import pandas\nprint(df.head())', result: result({ stdout: 'a\nb\nc\nd\ne\n' }) })], true);
    expect(text).toBe(':white_check_mark: *1. Step 1* · 1.2 s\n```import pandas\nprint(df.head())```\n> c\n> d\n> e');
  });

  test('errors, limits and running steps have their own icons; older steps fold to one line while live', () => {
    const steps = [
      step(1, { result: result({ error: { name: 'ValueError', value: 'bad', traceback: '' } }) }),
      step(2, { result: result({ limit: 'timeout', error: { name: 'StepTimeout', value: 'stopped', traceback: '' } }) }),
      step(3, { result: result({}) }),
      step(4, { result: result({}) }),
      step(5),
    ];
    const live = renderSteps(steps, true).split('\n');
    expect(live[0]).toBe(':x: *1. Step 1* · 1.2 s');
    expect(live[1]).toBe(':stopwatch: *2. Step 2* · 1.2 s');
    expect(live.filter((line) => line.startsWith('```')).length, 'the last three steps in detail').toBe(3);
    expect(live.at(-2)).toBe(':arrow_forward: *5. Step 5* · running…');
    expect(renderSteps(steps, false).split('\n').length, 'once done, one line per step').toBe(5);
  });

  test('model text cannot break the mrkdwn: titles are escaped and code cannot close its block', () => {
    const text = renderSteps([step(1, { title: '<!channel> & co', code: 'print("```")' })], true);
    expect(text).toMatch(/&lt;!channel&gt; &amp; co/);
    expect(text).toContain("print(\"'''\")");
  });

  test('a long turn stays within Slack’s section limit, newest steps kept', () => {
    const steps = Array.from({ length: 200 }, (_, index) => step(index + 1, { title: 'x'.repeat(60), result: result({}) }));
    const text = renderSteps(steps, false);
    expect(text.length).toBeLessThanOrEqual(2900);
    expect(text).toMatch(/^… \d+ earlier steps/);
    expect(text).toMatch(/\*200\. x+\*/);
  });
});

describe('status message', () => {
  test('posted with a Stop button carrying the turn id, edited as steps run, left with the outcome and no button', async () => {
    const thread = new RecordingSlackThread();
    const status = new StatusMessage(thread, 'turn-42', 0, silentLogger);
    await status.start();
    const message = thread.messages[0]!;
    expect(message.text).toBe(':hourglass_flowing_sand: Working on it…');
    expect(stopButtonValue(message)).toBe('turn-42');
    expect(thread.statuses).toStrictEqual(['is working…']);

    status.stepStarted(1, 'Load the data', 'import pandas', 'python');
    await thread.waitFor(() => blockTexts(message.blocks).includes('Load the data'));
    status.stepFinished(1, result({ stdout: '3 rows\n' }));
    await status.finish(':white_check_mark: Done · 1 step · 2.0 s');

    expect(message.text).toBe(':white_check_mark: Done · 1 step · 2.0 s');
    expect(stopButtonValue(message)).toBe(undefined);
    expect(blockTexts(message.blocks)).toMatch(/:white_check_mark: \*1\. Load the data\*/);
    expect(thread.statuses).toStrictEqual(['is working…', '']);
    expect(thread.messages.length, 'one message, edited in place').toBe(1);
  });

  test('where Slack refuses the assistant status, it is tried once and the edited message is the indicator', async () => {
    const thread = new RecordingSlackThread();
    thread.setStatusRefused = true;
    const status = new StatusMessage(thread, 'turn-1', 0, silentLogger);
    await status.start();
    await status.finish('Done');
    expect(thread.calls.filter((call) => call.method === 'setStatus').length).toBe(1);
    expect(thread.messages[0]!.text).toBe('Done');
  });

  test('edits are coalesced: many events within one interval make one edit, and the final edit keeps the interval', async () => {
    vi.useFakeTimers();
    try {
      const thread = new RecordingSlackThread();
      const status = new StatusMessage(thread, 'turn-2', 2_000, silentLogger);
      await status.start();
      for (let index = 1; index <= 20; index++) status.stepStarted(index, `step ${index}`, 'pass', 'python');
      expect(thread.messages[0]!.edits, 'nothing before the interval').toBe(0);
      await vi.advanceTimersByTimeAsync(2_000);
      expect(thread.messages[0]!.edits, 'twenty events, one edit').toBe(1);
      const finished = status.finish('Stopped');
      await vi.advanceTimersByTimeAsync(1_999);
      expect(thread.messages[0]!.edits, 'the final edit waits for the interval too').toBe(1);
      await vi.advanceTimersByTimeAsync(1);
      await finished;
      expect(thread.messages[0]!.edits).toBe(2);
      expect(thread.messages[0]!.text).toBe('Stopped');
    } finally {
      vi.useRealTimers();
    }
  });
});
