import { afterAll, beforeAll, expect, test } from 'vitest';
import { FakeOpenAI } from './fakes/fake-openai.js';
import { FakeSlack } from './fakes/fake-slack.js';
import { FakeSocketMode } from './fakes/fake-socket-mode.js';
import { BOT_TOKEN, OPENAI_KEY, startBot, type BotProcess } from './helpers/bot-process.js';
import { BOT_USER, scriptedModel, TEAM } from './helpers/harness.js';
import { mentionEvent, mentionText, nextMessageTs } from './helpers/slack-events.js';

const APP_TOKEN = 'xapp-1-test-app-token';
let socket: FakeSocketMode;
let slack: FakeSlack;
let ai: FakeOpenAI;
let bot: BotProcess;

beforeAll(async () => {
  socket = await new FakeSocketMode(APP_TOKEN).start();
  slack = await new FakeSlack({ botToken: BOT_TOKEN, botUserId: BOT_USER, teamId: TEAM, socketMode: { appToken: APP_TOKEN, url: () => socket.url } }).start();
  ai = await new FakeOpenAI({ apiKey: OPENAI_KEY }).start();
  ai.script(scriptedModel);
  // Socket Mode: no signing secret, no public URL; /healthz still answers on PORT.
  bot = await startBot({ slackApiUrl: slack.apiUrl, openaiBaseUrl: ai.baseUrl, env: { SLACK_APP_TOKEN: APP_TOKEN, SLACK_SIGNING_SECRET: '' } });
  await socket.waitForConnection();
});
afterAll(async () => {
  await bot?.stop();
  await Promise.all([socket?.close(), slack?.close(), ai?.close()]);
});

test('with SLACK_APP_TOKEN the bot takes mentions over Socket Mode, acks them and answers in the thread', async () => {
  const ts = nextMessageTs();
  const event = mentionEvent({ channel: 'C9', user: 'U1', text: mentionText(BOT_USER, 'run: print(7 * 6)'), ts });
  await socket.sendEvent({ type: 'event_callback', team_id: TEAM, api_app_id: 'A1', event, event_id: 'EvSocket1', event_time: 1 });
  const answer = await slack.waitFor((fake) => fake.botMessagesIn('C9', ts).find((message) => /Result:/.test(message.text ?? ''))?.text, 20_000);
  expect(answer).toMatch(/42/);
  expect(slack.callsTo('apps.connections.open').length).toBeGreaterThanOrEqual(1);
  expect(bot.output(), 'the app token is not logged').not.toContain(APP_TOKEN);
});

test('in Socket Mode express still serves the health and readiness routes on PORT, and no Events API route', async () => {
  for (const path of ['/health', '/healthz']) {
    const response = await fetch(`${bot.url}${path}`);
    expect(response.status, path).toBe(200);
    expect(await response.json(), path).toStrictEqual({ ok: true });
  }
  const ready = await fetch(`${bot.url}/ready`);
  expect(ready.status).toBe(200);
  expect(await ready.json()).toStrictEqual({ ready: true });
  const events = await fetch(bot.eventsUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  expect(events.status, 'events arrive over the WebSocket only').toBe(404);
});
