import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { StepRequest } from '../controller/sandbox/sandbox.js';
import type { WorkspaceLocation } from '../controller/workspace/workspace.js';
import { isSandboxError } from './helpers/sandbox-errors.js';
import { BUCKET, describeResult, type SessionFakes, useSessionFakes } from './helpers/cloud-run-session-fakes.js';

// Warm sessions on Cloud Run (issue 13) through the Sandbox seam: the real CloudRunSandbox and @google-cloud/run
// client against the fake Cloud Run, whose executions run the real session_relay.py, token_broker.py and
// `runner.py --session` over the fake GCS (the relay polls the mailbox through its JSON API).

const thread = (threadTs: string) => ({ team: 'T1', channel: 'C1', threadTs });
const python = (code: string, timeoutSec = 30): StepRequest => ({ language: 'python', code, timeoutSec });

/**
 * A loopback URL the step's code calls once it runs: a Stop sent before the code starts is raised at its first
 * line (docs/runner-protocol.md), so "the code ignores Stop" can only be tested once the code is in its loop.
 */
async function codeStartedSignal(): Promise<{ url: string; started: Promise<void>; close: () => void }> {
  let started: () => void = () => {};
  const promise = new Promise<void>((resolve) => (started = resolve));
  const server = createServer((_request, response) => {
    response.end('ok');
    started();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/started`, started: promise, close: () => server.close() };
}

describe('Cloud Run sessions against fake Cloud Run and fake GCS', () => {
  let fakes: SessionFakes;
  useSessionFakes((started) => (fakes = started));

  it('serves three steps with one runJob, keeps variables in memory, and results are read while the execution runs', async () => {
    const runsBefore = fakes.run.runs.length;
    const workspace = fakes.clients.store.open(thread('1700000100.000100'));
    const session = fakes.sandbox().session(workspace);
    const first = await session.run(python("numbers = (n * n for n in range(10))\ncount = 1\nprint(next(numbers))"));
    expect(first.stdout, describeResult(first, fakes.run)).toBe('0\n');
    const second = await session.run(python('count += 1\nprint(count, next(numbers))'));
    expect(second.stdout, describeResult(second, fakes.run)).toBe('2 1\n');
    const third = await session.run(python('count += 1\nprint(count)'));
    expect(third.stdout).toBe('3\n');
    expect(first.unsaved, 'a generator cannot be checkpointed: only memory keeps it').toContain('numbers');
    expect(second.notes).toStrictEqual([]);
    expect(fakes.run.runs.length - runsBefore).toBe(1);
    const [execution] = fakes.run.runs.slice(runsBefore);
    expect(fakes.run.running(), 'the results were read before the execution ended').toContain(execution!.executionName);
    expect(Object.keys(execution!.env).sort()).toStrictEqual([
      'OI_BUCKET', 'OI_LIMITS', 'OI_PREFIX', 'OI_SESSION_END_AT', 'OI_SESSION_ID', 'OI_SESSION_IDLE_SEC', 'OI_TOKEN', 'OI_TOKEN_EXPIRES_AT',
    ]);
    expect(execution!.env.OI_BUCKET).toBe(BUCKET);
    expect(execution!.env.OI_PREFIX).toBe('workspaces/T1/C1/1700000100.000100/');
    await session.release();
  });

  it('sees the files written into the prefix between steps, and the files a step writes are in GCS when its result is read', async () => {
    const workspace = fakes.clients.store.open(thread('1700000101.000100'));
    const session = fakes.sandbox().session(workspace);
    const first = await session.run(python("log = open('log.txt', 'w')\nlog.write('kept open')\nopen('made.txt', 'w').write('by the step')"));
    expect(first.error, describeResult(first, fakes.run)).toBeNull();
    expect(await readAll(await workspace.read('made.txt'))).toBe('by the step');
    expect(await readAll(await workspace.read('log.txt')), 'a file the code left open is flushed after the step').toBe('kept open');
    // A later mention's uploads: a new file, and a file replaced under the same name.
    await workspace.write('uploaded.csv', 'a,b\n1,2\n');
    await workspace.write('made.txt', 'replaced by an upload');
    const second = await session.run(python("print(open('uploaded.csv').read().splitlines()[1], open('made.txt').read())"));
    expect(second.stdout, describeResult(second, fakes.run)).toBe('1,2 replaced by an upload\n');
    await workspace.delete('uploaded.csv');
    const third = await session.run(python("import os\nprint(os.path.exists('uploaded.csv'))"));
    expect(third.stdout).toBe('False\n');
  });

  it('Stop inside a session: the runner stops the step through the mailbox and the session serves the next step', async () => {
    const runsBefore = fakes.run.runs.length;
    const workspace = fakes.clients.store.open(thread('1700000102.000100'));
    const session = fakes.sandbox().session(workspace);
    await session.run(python('before_stop = 5'));
    const controller = new AbortController();
    const running = session.run(python('while True:\n    pass'), { signal: controller.signal });
    await waitForTakenRequest(fakes, workspace.location, 2);
    controller.abort();
    await expect(running).rejects.toSatisfy(isSandboxError('cancelled'));
    const after = await session.run(python('print(before_stop)'));
    expect(after.stdout, describeResult(after, fakes.run)).toBe('5\n');
    expect(after.notes, 'still the same runner: nothing was restored').toStrictEqual([]);
    expect(fakes.run.runs.length - runsBefore).toBe(1);
    expect(fakes.run.cancelledExecutions).not.toContain(fakes.run.runs.at(-1)!.executionName);
  });

  it('a step that ignores Stop gets its execution cancelled after the grace period; the next step starts from the checkpoint', async () => {
    const runsBefore = fakes.run.runs.length;
    const workspace = fakes.clients.store.open(thread('1700000103.000100'));
    const session = fakes.sandbox().session(workspace);
    await session.run(python('saved_before = 8'));
    const controller = new AbortController();
    const signal = await codeStartedSignal();
    const stubborn = `import time, urllib.request\nwhile True:\n    try:\n        urllib.request.urlopen(${JSON.stringify(signal.url)}).read()\n        time.sleep(5)\n    except KeyboardInterrupt:\n        pass`;
    const running = session.run(python(stubborn), { signal: controller.signal });
    await signal.started;
    controller.abort();
    await expect(running).rejects.toSatisfy(isSandboxError('cancelled'));
    signal.close();
    const first = fakes.run.runs[runsBefore]!.executionName;
    expect(fakes.run.cancelledExecutions).toContain(first);
    const next = await session.run(python('print(saved_before)'));
    expect(next.stdout, describeResult(next, fakes.run)).toBe('8\n');
    expect(next.notes.join(' ')).toMatch(/restored from the checkpoint/);
    expect(fakes.run.runs.length - runsBefore).toBe(2);
  });

  it('a timeout inside a session ends the step, not the session', async () => {
    const runsBefore = fakes.run.runs.length;
    const session = fakes.sandbox().session(fakes.clients.store.open(thread('1700000104.000100')));
    const timedOut = await session.run(python('made = 1\nwhile True:\n    pass', 1));
    expect(timedOut.limit, describeResult(timedOut, fakes.run)).toBe('timeout');
    expect(timedOut.error?.value).toMatch(/STEP_TIMEOUT_SEC/);
    expect((await session.run(python('print(made)'))).stdout).toBe('1\n');
    expect(fakes.run.runs.length - runsBefore).toBe(1);
  });
});

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Waits until the session's relay has taken request `seq` (it read the object), i.e. the step is running. */
async function waitForTakenRequest(fakes: SessionFakes, location: WorkspaceLocation, seq: number): Promise<void> {
  const prefix = location.kind === 'gcs' ? location.prefix : '';
  const taken = () =>
    fakes.gcs.requests.some(
      (request) => request.method === 'GET' && request.status === 200 && request.query.alt === 'media' && decodeURIComponent(request.path).includes(`${prefix}.oi/session/`) && request.path.endsWith(`requests%2F${seq}.json`),
    );
  for (let attempt = 0; attempt < 600 && !taken(); attempt++) await new Promise((resolve) => setTimeout(resolve, 25));
  expect(taken(), `request ${seq} was never taken`).toBe(true);
}
