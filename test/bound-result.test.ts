import { expect, test } from 'vitest';
import { boundStepResult, clip, RESULT_CAPS } from '../controller/sandbox/bound-result.js';
import type { StepResult } from '../controller/sandbox/sandbox.js';

// Issue 14, findings 1 and 2: whatever the step wrote into its result, the controller keeps a bounded copy
// with its own duration.

const hostile: StepResult = {
  stepId: 'step-1',
  exitCode: 0,
  stdout: 'o'.repeat(40 * 1024 * 1024),
  stderr: '',
  outputTruncated: false,
  error: { name: 'E'.repeat(1000), value: 'v'.repeat(20 * 1024 * 1024), traceback: 't'.repeat(5 * 1024 * 1024) },
  durationMs: -1_000_000,
  figures: Array.from({ length: 1000 }, (_, index) => `figure-${index}.png`),
  files: Array.from({ length: 200_000 }, (_, index) => ({ path: `f${index}`, change: 'created' as const, size: index === 0 ? -5 : 1 })),
  unsaved: ['u'.repeat(10_000)],
  notes: Array.from({ length: 100 }, () => 'n'.repeat(10_000)),
};

test('a 20 MB error, a 40 MB stdout, 200,000 files and a negative duration come back bounded', () => {
  const bounded = boundStepResult(hostile, { maxOutputBytes: 100_000, durationMs: 1234.4 });
  expect(bounded.durationMs).toBe(1234);
  expect(bounded.stdout.length).toBeLessThanOrEqual(100_000);
  expect(bounded.outputTruncated).toBe(true);
  expect(bounded.error!.value.length).toBeLessThanOrEqual(RESULT_CAPS.errorValue);
  expect(bounded.error!.traceback.length).toBeLessThanOrEqual(RESULT_CAPS.traceback);
  expect(bounded.error!.name.length).toBeLessThanOrEqual(RESULT_CAPS.errorName);
  expect(bounded.files).toHaveLength(RESULT_CAPS.files);
  expect(bounded.files[0]!.size).toBe(0);
  expect(bounded.figures).toHaveLength(RESULT_CAPS.figures);
  expect(bounded.notes).toHaveLength(RESULT_CAPS.notes + 1);
  expect(bounded.notes.at(-1)).toBe('199500 more changed files are not listed.');
  expect(JSON.stringify(bounded).length).toBeLessThan(400_000);
});

test('clip keeps the head and the tail and says how much was cut', () => {
  expect(clip('short', 10)).toBe('short');
  const clipped = clip('a'.repeat(50) + 'b'.repeat(50), 60);
  expect(clipped.length).toBeLessThanOrEqual(60);
  expect(clipped.startsWith('aaaa')).toBe(true);
  expect(clipped.endsWith('bbbb')).toBe(true);
  expect(clipped).toContain('[... 40 characters cut ...]');
});
