import { describe, expect, test } from 'vitest';
import { SessionPool, type PooledSession } from '../controller/sandbox/local/session-pool.js';

// Issue 13 (local): the bookkeeping of warm sessions, with fake sessions (no runner is started).

class FakeSession implements PooledSession {
  alive = true;
  closedWith: string | undefined;
  constructor(readonly key: string, readonly serial: number) {}
  async close(reason: string): Promise<void> {
    this.alive = false;
    this.closedWith ??= reason;
  }
}

function makePool(options: { maxSessions?: number; idleMs?: number } = {}) {
  const started: FakeSession[] = [];
  const ended: [string, string][] = [];
  let onEnded: () => void = () => {};
  const pool = new SessionPool<FakeSession>({
    maxSessions: options.maxSessions ?? 4,
    idleMs: options.idleMs ?? 60_000,
    start: async (key) => {
      const session = new FakeSession(key, started.length);
      started.push(session);
      return session;
    },
    onEnded: (key, reason) => {
      ended.push([key, reason]);
      onEnded();
    },
  });
  const nextEnd = () => new Promise<void>((resolve) => (onEnded = resolve));
  return { pool, started, ended, nextEnd };
}

const serialOf = (session: FakeSession) => Promise.resolve(session.serial);

describe('SessionPool', () => {
  test('a thread reuses its session; two threads never share one', async () => {
    const { pool, started } = makePool();
    expect(await pool.use('A', serialOf)).toBe(0);
    expect(await pool.use('A', serialOf)).toBe(0);
    expect(await pool.use('B', serialOf)).toBe(1);
    expect(started.map((session) => session.key)).toStrictEqual(['A', 'B']);
  });

  test('at the maximum, the least recently used idle session is ended for a new thread', async () => {
    const { pool, started, ended } = makePool({ maxSessions: 2 });
    await pool.use('A', serialOf);
    await pool.use('B', serialOf);
    await pool.use('A', serialOf); // B is now the least recently used
    await pool.use('C', serialOf);
    expect(pool.size).toBe(2);
    expect(ended).toStrictEqual([['B', 'SANDBOX_MAX_SESSIONS=2 reached (least recently used)']]);
    expect(started[1]!.alive).toBe(false);
    expect(pool.has('A') && pool.has('C')).toBe(true);
  });

  test('while every session runs a step, a new thread waits for one to finish instead of exceeding the maximum', async () => {
    const { pool, ended } = makePool({ maxSessions: 1 });
    let finishA!: () => void;
    const runningA = pool.use('A', () => new Promise<string>((resolve) => (finishA = () => resolve('A done'))));
    await new Promise((resolve) => setImmediate(resolve));
    const order: string[] = [];
    const runningB = pool.use('B', async () => order.push('B ran'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toStrictEqual([]);
    expect(pool.size).toBe(1);
    finishA();
    expect(await runningA).toBe('A done');
    await runningB;
    expect(order).toStrictEqual(['B ran']);
    expect(ended.map(([key]) => key)).toStrictEqual(['A']);
  });

  test('a session idle for SANDBOX_SESSION_IDLE_SEC ends; the next step starts a new one', async () => {
    const { pool, started, ended, nextEnd } = makePool({ idleMs: 30 });
    const idleEnd = nextEnd();
    await pool.use('A', serialOf);
    await idleEnd;
    expect(ended).toStrictEqual([['A', 'idle for 0.03 s (SANDBOX_SESSION_IDLE_SEC)']]);
    expect(pool.has('A')).toBe(false);
    expect(await pool.use('A', serialOf)).toBe(1);
    expect(started).toHaveLength(2);
  });

  test('a session that died is replaced at the next step', async () => {
    const { pool, started } = makePool();
    await pool.use('A', async (session) => {
      session.alive = false; // as after kill -9 of the runner
    });
    expect(await pool.use('A', serialOf)).toBe(1);
    expect(started[0]!.closedWith).toBe('its process was gone');
  });

  test("one step at a time per thread: a second use waits for the first", async () => {
    const { pool } = makePool();
    const order: string[] = [];
    let finishFirst!: () => void;
    const first = pool.use('A', async () => {
      order.push('first started');
      await new Promise<void>((resolve) => (finishFirst = resolve));
      order.push('first ended');
    });
    const second = pool.use('A', async () => order.push('second ran'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toStrictEqual(['first started']);
    finishFirst();
    await Promise.all([first, second]);
    expect(order).toStrictEqual(['first started', 'first ended', 'second ran']);
  });

  test('a session that fails to start leaves no entry; close() ends the rest', async () => {
    let fail = true;
    const pool = new SessionPool<FakeSession>({
      maxSessions: 2,
      idleMs: 60_000,
      start: async (key) => {
        if (fail) throw new Error('bwrap failed');
        return new FakeSession(key, 0);
      },
    });
    await expect(pool.use('A', serialOf)).rejects.toThrow('bwrap failed');
    expect(pool.size).toBe(0);
    fail = false;
    let session: FakeSession | undefined;
    await pool.use('A', async (live) => (session = live));
    await pool.close();
    expect(session!.closedWith).toBe('the sandbox is closing');
    await expect(pool.use('B', serialOf)).rejects.toThrow('the sandbox is closed');
  });
});

test('warm() starts a thread\'s session ahead; the step that follows uses it', async () => {
  const { pool, started } = makePool();
  pool.warm('A');
  pool.warm('A'); // once
  expect(await pool.use('A', serialOf)).toBe(0);
  expect(started).toHaveLength(1);
});

test('warm() never ends another session and starts only a few at once', async () => {
  const { pool, started, ended } = makePool({ maxSessions: 2 });
  await pool.use('A', serialOf);
  await pool.use('B', serialOf);
  pool.warm('C'); // the pool is full: a guess does not evict A or B
  expect(ended).toStrictEqual([]);
  expect(pool.has('C')).toBe(false);
  const { pool: wide, started: startedWide } = makePool({ maxSessions: 10 });
  for (const key of ['D', 'E', 'F', 'G']) wide.warm(key);
  await new Promise((resolve) => setImmediate(resolve));
  expect(startedWide.length).toBeLessThanOrEqual(2);
  expect(started).toHaveLength(2);
});
