import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { localBackend, startHarness, stopHarness, type Harness } from './helpers/harness.js';

// Issue 14, finding 1, end to end: steps that raise an exception with a 20 MB message in eight threads
// at once. Before the fix the controller kept errors whole and died of heap exhaustion; now the bot stays
// up, every thread is answered, and every history stays small.

let h: Harness;
beforeAll(async () => {
  h = await startHarness(localBackend, { MAX_CONCURRENT_TURNS: '8' });
});
afterAll(async () => stopHarness(h));

test('a 20 MB exception in eight threads at once: the bot stays up and every thread is answered', { timeout: 180_000 }, async () => {
  const code = 'raise ValueError("v" * (20 * 1024 * 1024))';
  const threads = await Promise.all(Array.from({ length: 8 }, () => h.mention(`run: ${code}`)));
  const replies = await Promise.all(threads.map(({ threadTs }) => h.waitForReply(threadTs, /^Result:/, 'C1', 150_000)));
  for (const reply of replies) {
    expect(reply).toMatch(/ValueError/);
    expect(reply.length).toBeLessThan(50_000);
  }
  expect(h.bot.child.exitCode, 'the bot is still running').toBe(null);
  expect((await fetch(`${h.bot.url}/healthz`)).status).toBe(200);
  for (const { threadTs } of threads) {
    const history = join(h.bot.dataDir, 'threads', 'T1', 'C1', threadTs, 'messages.json');
    expect(statSync(history).size, 'the history entry is bounded').toBeLessThan(1024 * 1024);
    expect(readFileSync(history, 'utf8')).toMatch(/ValueError/);
  }
});
