import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { lastUserText, toolResults, userTexts } from '../fakes/fake-openai.js';
import { processesMatching } from './experience.js';
import type { startGcpFakes } from './gcp-fakes.js';
import type { Backend } from './harness.js';
import { startInstances, type Instances } from './instances.js';
import { blocksText, statusMessages, stopButtonValue } from './status-blocks.js';

/**
 * Issue 15: the controller as several instances on one store, and across restarts, with the bot as operators run
 * it (`npm start`'s command), against one backend: bot processes sharing DATA_DIR, or one fake GCS bucket (with
 * the fake Cloud Run for steps). e2e-instances-local.test.ts and e2e-instances-gcp.test.ts run them.
 */

const INTERRUPTED = /I was interrupted \(the bot restarted\) before I finished this request\. Mention me again to run it\./;
const QUEUED = /I'll get to this after the current turn/;

/** The requests a fake GCS answered, for a backend that has one (`gcsRequests` spread into it). */
export function gcsRequests(gcs: Awaited<ReturnType<typeof startGcpFakes>>['gcs']) {
  return { requests: () => gcs.requests.map((request) => ({ status: request.status, name: request.query.name ?? decodeURIComponent(request.path).replace(/^.*\/o\//, '') })) };
}

/** Nothing a user reads says something went wrong on the bot's side (a 412 handled, not shown). */
function expectNoWarning(h: Instances, threadTs: string): void {
  const warnings = h.slack.botMessagesIn('C1', threadTs).filter((message) => /Something went wrong|:warning: (?!I was interrupted|Interrupted)/.test(message.text ?? ''));
  expect(warnings.map((message) => message.text)).toStrictEqual([]);
  for (const bot of h.bots) expect(bot.logLines().filter((line) => line.message === 'turn failed')).toStrictEqual([]);
}

/** Waits until the thread's status message shows a step running, and returns its ts. */
function waitForRunningStep(h: Instances, threadTs: string): Promise<string> {
  return h.slack.waitFor(() => statusMessages(h.slack, 'C1', threadTs).find((message) => /Running/.test(blocksText(message.blocks)))?.ts, 30_000);
}

export function instanceScenarios(name: string, makeBackend: () => Promise<Backend>): void {
  describe(`several instances on one store (${name})`, () => {
    let h: Instances;
    beforeAll(async () => {
      h = await startInstances(makeBackend, 2, { TURN_LEASE_SEC: '4', TURN_SWEEP_SEC: '1' });
    });
    afterAll(async () => h?.close());

    test("one event delivered to both instances (the second as Slack's retry) runs one turn", async () => {
      const [a, b] = [h.bots[0]!, h.bots[1]!];
      const first = await h.mention(a, 'only one turn please');
      const retry = await h.mention(b, 'only one turn please', { ts: first.ts, eventId: first.eventId, retryNum: 1 });
      expect([first.status, retry.status]).toStrictEqual([200, 200]);
      await h.waitForReply(first.threadTs, /echo: only one turn please/);
      await h.idle();
      expect(h.ai.requests.filter((request) => lastUserText(request.body) === 'only one turn please')).toHaveLength(1);
      expect(h.slack.botMessagesIn('C1', first.threadTs).filter((message) => /echo:/.test(message.text ?? ''))).toHaveLength(1);
      expect(h.slack.botMessagesIn('C1', first.threadTs).filter((message) => QUEUED.test(message.text ?? '')), 'no second turn queued').toStrictEqual([]);
      expectNoWarning(h, first.threadTs);
      const duplicates = h.bots.flatMap((bot) => bot.logLines()).filter((line) => line.message === 'mention delivered again: ignored');
      expect(duplicates, 'the store told the second instance').toHaveLength(1);
      const refused = (h.backend as Partial<ReturnType<typeof gcsRequests>>).requests?.().filter((request) => request.status === 412 && request.name.startsWith('coordination/messages/'));
      if (refused !== undefined) expect(refused, 'GCS refused the second create of the message record').toHaveLength(1);
    });

    test('two mentions in one thread sent to different instances run in order; the second sees the first', async () => {
      const [a, b] = [h.bots[0]!, h.bots[1]!];
      const first = await h.mention(a, "run: import time\ntime.sleep(2)\nprint('first done')");
      await h.ai.waitFor((ai) => ai.requests.find((request) => /first done/.test(lastUserText(request.body))), 20_000);
      await h.mention(b, 'what did the first one print?', { threadTs: first.threadTs });
      await h.waitForReply(first.threadTs, QUEUED);
      await h.waitForReply(first.threadTs, /echo: what did the first one print/, 40_000);
      const texts = h.slack.botMessagesIn('C1', first.threadTs).map((message) => message.text ?? '');
      expect(texts.findIndex((text) => /Result: first done/.test(text))).toBeLessThan(texts.findIndex((text) => /echo: what did/.test(text)));
      const second = h.ai.requests.find((request) => lastUserText(request.body) === 'what did the first one print?')!;
      expect(userTexts(second.body)[0], 'the first turn is in its history').toMatch(/first done/);
      expect(toolResults(second.body).map((result) => result.content)).toContainEqual(expect.stringMatching(/first done/));
      await h.idle();
      expectNoWarning(h, first.threadTs);
    });

    test('a lease held by a dead instance is taken over after it expires; the mention queued meanwhile runs after', async () => {
      const [a, b] = [h.bots[0]!, h.bots[1]!];
      const marker = `lease-${Date.now()}`;
      const first = await h.mention(a, `run: import time\nprint('${marker}', flush=True)\ntime.sleep(30)`);
      await waitForRunningStep(h, first.threadTs);
      await h.kill(a);
      await h.mention(b, 'are you still there?', { threadTs: first.threadTs });
      await h.waitForReply(first.threadTs, QUEUED); // the dead instance's lease has not expired yet
      await h.waitForReply(first.threadTs, INTERRUPTED, 30_000);
      await h.waitForReply(first.threadTs, /echo: are you still there/, 30_000);
      const [status] = statusMessages(h.slack, 'C1', first.threadTs);
      expect(stopButtonValue(status!.blocks), 'the status message no longer offers Stop').toBeUndefined();
      expect(blocksText(status!.blocks)).toMatch(/Interrupted/);
      const asked = h.ai.requests.find((request) => lastUserText(request.body) === 'are you still there?')!;
      expect(JSON.stringify(asked.body.messages), 'the model knows the turn was interrupted').toMatch(/interrupted before it finished/);
      for (const leftover of await processesMatching(marker)) process.kill(leftover.pid, 'SIGKILL');
      await h.start({ TURN_LEASE_SEC: '4', TURN_SWEEP_SEC: '1' }); // two instances again for the next test
    });

    test('graceful SIGTERM: a step that cannot finish in the grace period is cut short and told; the thread goes on elsewhere', async () => {
      const [a, b] = [h.bots[0]!, h.bots[1]!];
      const marker = `sigterm-${Date.now()}`;
      const first = await h.mention(a, `run: import time\nprint('${marker}', flush=True)\ntime.sleep(30)`);
      await waitForRunningStep(h, first.threadTs);
      await h.mention(b, 'and after the restart?', { threadTs: first.threadTs });
      await h.waitForReply(first.threadTs, QUEUED);
      expect(await a.stop(), 'exit code').toBe(0);
      h.bots = h.bots.filter((bot) => bot !== a);
      await h.waitForReply(first.threadTs, INTERRUPTED, 10_000);
      await h.waitForReply(first.threadTs, /echo: and after the restart/, 30_000);
      expect(h.slack.botMessagesIn('C1', first.threadTs).filter((message) => INTERRUPTED.test(message.text ?? ''))).toHaveLength(1);
      expect(h.slack.botMessagesIn('C1', first.threadTs).map((message) => message.text).join('\n')).not.toMatch(/Stopped/);
      await h.idle();
      expectNoWarning(h, first.threadTs);
      expect(b.logLines().filter((line) => line.message === 'lease taken over')).not.toStrictEqual([]);
    });
  });

  describe(`a restart after kill -9 (${name})`, () => {
    let h: Instances;
    beforeAll(async () => {
      // The shipped lease and sweep settings: the thread must hear within 30 s with them.
      h = await startInstances(makeBackend, 1);
    });
    afterAll(async () => h?.close());

    test('kill -9 mid-step and a restart: the thread is told within 30 s, and the status message no longer says it is working', async () => {
      const marker = `killed-${Date.now()}`;
      const first = await h.mention(h.bots[0]!, `run: import time\nprint('${marker}', flush=True)\ntime.sleep(60)`);
      const statusTs = await waitForRunningStep(h, first.threadTs);
      await h.kill(h.bots[0]!);
      for (const leftover of await processesMatching(marker)) process.kill(leftover.pid, 'SIGKILL');
      await h.start();
      const restarted = Date.now();
      await h.waitForReply(first.threadTs, INTERRUPTED, 30_000);
      expect(Date.now() - restarted).toBeLessThan(30_000);
      const status = h.slack.botMessagesIn('C1', first.threadTs).find((message) => message.ts === statusTs)!;
      expect(stopButtonValue(status.blocks)).toBeUndefined();
      expect(status.text).not.toMatch(/Working|Running|Thinking/);
      expect(blocksText(status.blocks)).not.toMatch(/hourglass/);
      await h.mention(h.bots[0]!, 'hello again', { threadTs: first.threadTs });
      await h.waitForReply(first.threadTs, /echo: hello again/);
      await h.idle();
      expectNoWarning(h, first.threadTs);
    });
  });
}
