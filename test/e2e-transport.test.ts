import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { lastUserText } from './fakes/fake-openai.js';
import { SIGNING_SECRET } from './helpers/bot-process.js';
import { waitForFinishedStatus } from './helpers/experience.js';
import { BOT_USER, localBackend, startHarness, stopHarness, type Harness } from './helpers/harness.js';
import { mentionEvent, mentionText, postEvent, postUrlVerification } from './helpers/slack-events.js';

/**
 * The controller's transports as the current majors provide them, through the whole bot: Bolt 5's ExpressReceiver
 * serving the Events API and the health routes, @slack/web-api 8 waiting out Slack's rate limits, and the openai
 * client's retries (the controller builds it with `maxRetries: 3, timeout: 180_000`).
 */

describe('HTTP routes, Slack rate limits and model retries', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(localBackend);
  });
  afterAll(async () => stopHarness(h));

  /** The model requests of the turn(s) a user message with exactly this text started. */
  const attemptsFor = (text: string) => h.ai.requests.filter((request) => lastUserText(request.body) === text);

  test('express serves the health routes, readiness, and POST /slack/events with its signature checked', async () => {
    for (const path of ['/health', '/healthz']) {
      const response = await fetch(`${h.bot.url}${path}`);
      expect(response.status, path).toBe(200);
      expect(await response.json(), path).toStrictEqual({ ok: true });
    }
    const ready = await fetch(`${h.bot.url}/ready`);
    expect(ready.status, 'ready once started').toBe(200);
    expect(await ready.json()).toStrictEqual({ ready: true });
    expect(ready.headers.get('x-powered-by'), 'express does not advertise itself').toBeNull();

    const unsigned = await fetch(h.bot.eventsUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"type":"event_callback"}' });
    expect(unsigned.status).toBe(401);
    const forged = await postEvent(h.bot.eventsUrl, 'not-the-signing-secret', mentionEvent({ channel: 'C1', user: 'U1', text: mentionText(BOT_USER, 'forged') }));
    expect(forged.status).toBe(401);
    const verification = await postUrlVerification(h.bot.eventsUrl, SIGNING_SECRET, 'challenge-from-slack');
    expect(verification.status).toBe(200);
    expect(verification.body).toMatch(/challenge-from-slack/);
    expect((await fetch(`${h.bot.url}/slack/elsewhere`)).status).toBe(404);
    await h.idle();
    expect(attemptsFor('forged')).toStrictEqual([]);
  });

  test("Slack's rate limits (429 with Retry-After) are waited out: every call goes through, once", async () => {
    h.slack.rateLimit('chat.postMessage', { every: 2, retryAfterSec: 1 });
    try {
      const { threadTs } = await h.mention('run: print("through the rate limit")');
      await h.waitForReply(threadTs, /Result: through the rate limit/, 'C1', 60_000);
      await waitForFinishedStatus(h.slack, threadTs, 'C1', 60_000);
      expect(h.slack.rateLimited.map((call) => call.method)).toContain('chat.postMessage');
      const answers = h.slack.botMessagesIn('C1', threadTs).filter((message) => /Result:/.test(message.text));
      expect(answers, 'the rate-limited post was retried, not doubled').toHaveLength(1);
      expect(h.slack.unexpected).toStrictEqual([]);
    } finally {
      h.slack.clearRateLimits();
    }
  });

  test("the model's 429 with retry-after is retried and the turn succeeds", async () => {
    h.ai.enqueue({ error: { status: 429, retryAfterMs: 200 } });
    const { threadTs } = await h.mention('a rate-limited model');
    await h.waitForReply(threadTs, /echo: a rate-limited model/);
    const attempts = attemptsFor('a rate-limited model').map((request) => [request.status, request.headers['x-stainless-retry-count']]);
    expect(attempts).toStrictEqual([
      [429, '0'],
      [200, '1'],
    ]);
  });

  test('a model 500 is retried three times (maxRetries: 3), then the thread is told', async () => {
    h.ai.enqueue(...Array.from({ length: 4 }, () => ({ error: { status: 500, message: 'the fake model is down' } })));
    const { threadTs } = await h.mention('a broken model');
    const message = await h.waitForReply(threadTs, /model service/, 'C1', 30_000);
    expect(message).toMatch(/HTTP 500/);
    const attempts = attemptsFor('a broken model').map((request) => [request.status, request.headers['x-stainless-retry-count']]);
    expect(attempts).toStrictEqual([
      [500, '0'],
      [500, '1'],
      [500, '2'],
      [500, '3'],
    ]);
    expect(h.ai.pendingReplies).toBe(0);
  });

  // Last: it shuts the bot down.
  test('on SIGTERM /ready answers 503 while the running turn drains; the turn still answers and the bot exits 0', async () => {
    h.ai.enqueue({ content: 'finished while draining', delayMs: 1500 });
    const { threadTs } = await h.mention('a turn at shutdown');
    await h.ai.waitFor((ai) => ai.requests.find((request) => lastUserText(request.body) === 'a turn at shutdown'));
    h.bot.child.kill('SIGTERM');
    let status = 0;
    for (let attempt = 0; attempt < 100 && status !== 503; attempt++) {
      status = (await fetch(`${h.bot.url}/ready`)).status;
      if (status !== 503) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(status, 'not ready while draining').toBe(503);
    expect((await fetch(`${h.bot.url}/health`)).status, 'still alive while draining').toBe(200);
    expect(await h.bot.stop(), 'exit code').toBe(0);
    expect(h.slack.botMessagesIn('C1', threadTs).map((message) => message.text)).toContain('finished while draining');
  });
});
