/**
 * The step protocol (sandbox/runner-protocol.ts) that both backends share: the request they write, the one
 * check of what the runner wrote back, and the wording of a limit the controller enforced itself.
 */
import { describe, expect, test } from 'vitest';
import { DEFAULT_LIMITS, parseRunnerResult, parseSessionReply, sessionDisplays, STEP_TIMEOUT_ERROR, stepRequestJson, stoppedStepResult } from '../controller/sandbox/runner-protocol.js';

const valid = {
  id: 'step-1',
  stdout: '42\n',
  stderr: '',
  outputTruncated: false,
  error: null,
  durationMs: 12,
  figures: ['figure-1.png'],
  files: [{ path: 'figure-1.png', change: 'created', size: 100 }],
  unsaved: [],
  notes: [],
};

describe('runner protocol', () => {
  test('the request file carries the step, its id, the limits, the output bound and asks for displays', () => {
    const json = stepRequestJson('step-1', { language: 'python', code: 'print(1)', timeoutSec: 30 }, DEFAULT_LIMITS, 1000);
    expect(JSON.parse(json)).toStrictEqual({ id: 'step-1', language: 'python', code: 'print(1)', timeoutSec: 30, limits: DEFAULT_LIMITS, maxOutputBytes: 1000, displays: true });
    expect(() => stepRequestJson('step-1', { language: 'python', code: 'x', timeoutSec: Number.NaN }, DEFAULT_LIMITS, 1000)).toThrow();
  });

  test('a valid result becomes the step result, unknown fields dropped', () => {
    const parsed = parseRunnerResult(JSON.stringify({ ...valid, limit: 'memory', extra: 'ignored' }), 'step-1');
    const { id: _id, ...fields } = valid;
    expect(parsed).toStrictEqual({ result: { ...fields, stepId: 'step-1', exitCode: 0, limit: 'memory' } });
  });

  test('anything else is refused with the reason: not JSON, wrong types, another step’s result', () => {
    const problem = (text: string, stepId = 'step-1') => {
      const parsed = parseRunnerResult(text, stepId);
      return 'problem' in parsed ? parsed.problem : 'accepted';
    };
    expect(problem('{not json')).toMatch(/^result\.json is not JSON/);
    expect(problem(JSON.stringify({ ...valid, durationMs: 'fast' }))).toMatch(/durationMs/);
    expect(problem(JSON.stringify({ ...valid, files: [{ path: 'a', change: 'renamed', size: 1 }] }))).toMatch(/files/);
    expect(problem(JSON.stringify({ ...valid, limit: 'patience' }))).toMatch(/limit/);
    expect(problem(JSON.stringify({ ...valid, error: 'boom' }))).toMatch(/error/);
    expect(problem(JSON.stringify(valid), 'step-2')).toBe('result.json belongs to step step-1, not step-2');
  });

  test('table displays are read, bounded again, and may only point at the runner\'s own CSV folder', () => {
    const table = { kind: 'table', columns: ['region', 'x'.repeat(500)], indexColumns: 0, rows: Array.from({ length: 80 }, (_, row) => [`r${row}`, '1']), totalRows: 80, totalColumns: 2, text: 't'.repeat(10_000), csv: '.oi/displays/step-1/1.csv' };
    const parsed = parseRunnerResult(JSON.stringify({ ...valid, displays: [table, { ...table, csv: 'secrets/../../x.csv' }] }), 'step-1');
    if (!('result' in parsed)) throw new Error(parsed.problem);
    const [first, second] = parsed.result.displays ?? [];
    expect(first?.rows).toHaveLength(50);
    expect(first?.columns[1]).toHaveLength(100);
    expect(first?.text.length).toBeLessThanOrEqual(4_000);
    expect(first?.csv).toBe('.oi/displays/step-1/1.csv');
    expect(second).toBeDefined();
    expect(second?.csv).toBeUndefined();
    const malformed = parseRunnerResult(JSON.stringify({ ...valid, displays: [{ ...table, rows: 'many' }] }), 'step-1');
    expect('problem' in malformed && malformed.problem).toMatch(/displays/);
  });

  test("a session's tables are kept, bounded the same way; a malformed one is dropped, not the step's result", () => {
    const table = { kind: 'table', columns: ['region'], indexColumns: 0, rows: Array.from({ length: 80 }, (_, row) => [`r${row}`]), totalRows: 80, totalColumns: 1, text: 'region', csv: '/etc/passwd' };
    const line = JSON.stringify({ type: 'result', ...valid, restored: 'memory', displays: [table, { ...table, rows: 'many' }] });
    const parsed = parseSessionReply(line);
    if (!('reply' in parsed) || parsed.reply.type !== 'result') throw new Error('the reply was refused');
    const { displays } = sessionDisplays(parsed.reply.displays);
    expect(displays).toHaveLength(1);
    expect(displays?.[0]?.rows).toHaveLength(50);
    expect(displays?.[0]?.csv, 'only the runner\'s own folder').toBeUndefined();
    expect(sessionDisplays(undefined)).toStrictEqual({});
  });

  test('a step the controller stopped names its limit with the setting, and the timeout has one name', () => {
    const limits = { memoryMb: 512, cpuSec: 60, maxProcesses: 32, maxFileMb: 10 };
    const stopped = (limit: 'timeout' | 'memory' | 'cpu' | 'processes' | 'file_size') =>
      stoppedStepResult({ stepId: 's', limit, limits, timeoutSec: 30, durationMs: 31_000, exitCode: 137, note: 'lost' });
    expect(stopped('timeout').error).toStrictEqual({ name: STEP_TIMEOUT_ERROR, value: 'The step was stopped after 30 s (STEP_TIMEOUT_SEC).', traceback: '' });
    expect(STEP_TIMEOUT_ERROR).toBe('StepTimeout');
    expect(stopped('memory').error?.value).toMatch(/SANDBOX_MEMORY_MB=512/);
    expect(stopped('cpu').error?.value).toMatch(/SANDBOX_CPU_SEC=60 s/);
    expect(stopped('processes').error?.value).toMatch(/SANDBOX_MAX_PROCESSES=32/);
    expect(stopped('file_size').error?.value).toMatch(/SANDBOX_MAX_FILE_MB=10/);
    expect(stopped('cpu').error?.name).toBe('LimitExceeded');
    expect(stopped('timeout')).toMatchObject({ limit: 'timeout', exitCode: 137, durationMs: 31_000, notes: ['lost'], stdout: '', files: [] });
  });
});
