/**
 * How a file is shared after a turn (turn/share-turn-files.ts), in process: TurnFiles collects what the steps
 * created, shareTurnFiles posts it through a recording SlackThread from a real LocalWorkspace.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { silentLogger } from '../controller/logger.js';
import type { StepResult } from '../controller/sandbox/sandbox.js';
import { shareTurnFiles, TurnFiles } from '../controller/turn/share-turn-files.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { RecordingSlackThread } from './helpers/recording-slack-thread.js';

const result = (overrides: Partial<StepResult>): StepResult => ({
  stepId: 's',
  exitCode: 0,
  stdout: '',
  stderr: '',
  outputTruncated: false,
  error: null,
  durationMs: 1,
  figures: [],
  files: [],
  unsaved: [],
  notes: [],
  ...overrides,
});

let counter = 0;
async function newWorkspace() {
  const store = new LocalWorkspaceStore(await mkdtemp(join(tmpdir(), 'oi-share-')));
  return store.open({ team: 'T1', channel: 'C1', threadTs: `1700000000.${String(++counter).padStart(6, '0')}` });
}

describe('files of a turn', () => {
  test('TurnFiles keeps created and modified files once, never deleted or internal ones, and every figure', () => {
    const files = new TurnFiles();
    expect(files.isEmpty).toBe(true);
    files.collect(result({ files: [{ path: 'a.csv', change: 'created', size: 1 }, { path: '.oi/state.pkl', change: 'modified', size: 9 }, { path: 'gone.txt', change: 'deleted', size: 0 }], figures: ['figure-1.png'] }));
    files.collect(result({ files: [{ path: 'a.csv', change: 'modified', size: 2 }, { path: 'b.txt', change: 'created', size: 1 }], figures: ['figure-2.png'] }));
    expect([...files.paths]).toStrictEqual(['a.csv', 'b.txt']);
    expect(files.figures).toStrictEqual(['figure-1.png', 'figure-2.png']);
    expect(files.isEmpty).toBe(false);
  });

  test('figures first, then images, then other files, in one message; the bytes are the workspace’s', async () => {
    const workspace = await newWorkspace();
    await workspace.write('report.csv', 'a,b\n1,2\n');
    await workspace.write('charts/q1.png', 'png-bytes');
    await workspace.write('figure-1.png', 'figure-bytes');
    const thread = new RecordingSlackThread();
    const outcome = await shareTurnFiles({ thread, workspace, paths: ['report.csv', 'charts/q1.png'], figures: ['figure-1.png'], max: 10, logger: silentLogger });
    expect(outcome).toStrictEqual({ shared: ['figure-1.png', 'charts/q1.png', 'report.csv'], notShared: 0, failed: [] });
    expect(thread.uploads.map((upload) => [upload.title, upload.filename, upload.content.toString()])).toStrictEqual([
      ['figure-1.png', 'figure-1.png', 'figure-bytes'],
      ['charts/q1.png', 'q1.png', 'png-bytes'],
      ['report.csv', 'report.csv', 'a,b\n1,2\n'],
    ]);
    expect(thread.calls.filter((call) => call.method === 'uploadFiles').length, 'up to five files share one message').toBe(1);
    expect(thread.messages, 'no note when everything was shared').toStrictEqual([]);
  });

  test('over MAX_SHARED_FILES_PER_TURN the rest is counted and `download` offered', async () => {
    const workspace = await newWorkspace();
    for (const name of ['a.txt', 'b.txt', 'c.txt']) await workspace.write(name, name);
    const thread = new RecordingSlackThread();
    const outcome = await shareTurnFiles({ thread, workspace, paths: ['a.txt', 'b.txt', 'c.txt'], figures: [], max: 1, logger: silentLogger });
    expect(outcome).toStrictEqual({ shared: ['a.txt'], notShared: 2, failed: [] });
    expect(thread.texts).toStrictEqual(['…and 2 more files from this turn. Write `download` to get every file of this thread.']);
  });

  test('empty, missing, internal, cached and unsafe paths are never posted', async () => {
    const workspace = await newWorkspace();
    await workspace.write('empty.txt', '');
    await workspace.write('.oi/steps/x/result.json', '{}');
    await workspace.write('__pycache__/m.pyc', 'bytecode');
    const thread = new RecordingSlackThread();
    const outcome = await shareTurnFiles({
      thread,
      workspace,
      paths: ['empty.txt', 'missing.csv', '.oi/steps/x/result.json', '__pycache__/m.pyc', '../escape.txt', '/etc/passwd'],
      figures: [],
      max: 10,
      logger: silentLogger,
    });
    expect(outcome).toStrictEqual({ shared: [], notShared: 0, failed: [] });
    expect(thread.calls.filter((call) => call.method === 'uploadFiles')).toStrictEqual([]);
  });

  test('a file Slack did not take is named with a way to try again', async () => {
    const workspace = await newWorkspace();
    await workspace.write('data.csv', '1,2,3\n');
    const thread = new RecordingSlackThread();
    thread.uploadFiles = async (files) => ({ posted: [], failed: new Map(files.map((file) => [file.title, 'the upload failed'])) });
    const outcome = await shareTurnFiles({ thread, workspace, paths: ['data.csv'], figures: [], max: 10, logger: silentLogger });
    expect(outcome.failed).toStrictEqual(['data.csv']);
    expect(thread.texts).toStrictEqual([':warning: I could not post `data.csv` (the upload failed). Write `download` to try again.']);
  });
});
