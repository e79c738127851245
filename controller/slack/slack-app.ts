import type { Server } from 'node:http';
import { App, ExpressReceiver, LogLevel, type Logger as BoltLogger } from '@slack/bolt';
import express, { type Request, type Response, type Router } from 'express';
import type { Bot, Mention, SlackFileRef } from '../turn/bot.js';
import { stripBotMention } from '../turn/commands/parse-command.js';
import type { Config } from '../config.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ThreadKey } from '../workspace/thread-key.js';
import { STOP_ACTION_ID } from './status-message.js';

/**
 * Transport only (Bolt's own rule): turn Slack events into Mentions for the Bot, and Stop clicks
 * into bot.stop(). Events are acknowledged by Bolt before any listener work; the listener starts
 * the turn and returns at once.
 */
/**
 * Liveness and readiness as operators and Cloud Run see them. `/health` is the route to use on Cloud Run
 * (it intercepts paths ending in "z"); `/healthz` stays for local use. `/ready` answers 503 before the
 * bot has started and while it drains at shutdown.
 */
export class HealthState {
  ready = false;
}

export function healthRouter(state: HealthState): Router {
  const router = express.Router();
  const healthy = (_request: Request, response: Response) => {
    response.json({ ok: true });
  };
  router.get('/health', healthy);
  router.get('/healthz', healthy);
  router.get('/ready', (_request, response) => {
    response.status(state.ready ? 200 : 503).json({ ready: state.ready });
  });
  return router;
}

/** The Bolt app and the HTTP server around it (express in both modes). */
export interface SlackApp {
  app: App;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * HTTP mode: Bolt's ExpressReceiver serves `POST /slack/events` (signature checked) on an express app that also
 * serves the health routes. Socket Mode: Bolt talks to Slack over a WebSocket and a small express app serves only
 * the health routes on PORT (Cloud Run and operators still probe it).
 */
export function createSlackApp(config: Config, logger: Logger, health: HealthState): SlackApp {
  const common = {
    token: config.slack.botToken,
    logger: boltLogger(logger),
    logLevel: LogLevel.WARN,
    clientOptions: config.slack.apiUrl === undefined ? {} : { slackApiUrl: config.slack.apiUrl },
  };
  const web = express();
  web.disable('x-powered-by');
  web.use(healthRouter(health));
  const port = config.slack.port;
  if (config.slack.appToken !== undefined) {
    const app = new App({ ...common, appToken: config.slack.appToken, socketMode: true });
    let server: Server | undefined;
    return {
      app,
      start: async () => {
        await app.start();
        server = await listen(web, port);
      },
      stop: async () => {
        await app.stop();
        await closeServer(server);
      },
    };
  }
  const receiver = new ExpressReceiver({
    signingSecret: config.slack.signingSecret!,
    app: web,
    endpoints: '/slack/events',
    logger: common.logger,
  });
  const app = new App({ ...common, receiver });
  return {
    app,
    start: async () => {
      await app.start(port);
    },
    stop: async () => {
      await app.stop();
    },
  };
}

function listen(web: express.Express, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = web.listen(port, (error?: Error) => (error === undefined ? resolve(server) : reject(error)));
  });
}

function closeServer(server: Server | undefined): Promise<void> {
  return new Promise((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
}

/** Remembers recently seen keys so a retried or duplicated delivery starts no second turn. */
export class RecentKeys {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly ttlMs = 30 * 60_000,
    private readonly maxKeys = 50_000,
  ) {}

  /** True the first time a key is seen (within the TTL). */
  firstTime(key: string, now = Date.now()): boolean {
    const expiry = this.seen.get(key);
    if (expiry !== undefined && expiry > now) return false;
    this.seen.set(key, now + this.ttlMs);
    if (this.seen.size > this.maxKeys) {
      for (const [oldKey, oldExpiry] of this.seen) {
        if (oldExpiry <= now || this.seen.size > this.maxKeys) this.seen.delete(oldKey);
        else break;
      }
    }
    return true;
  }
}

interface MessageLikeEvent {
  type: string;
  subtype?: string;
  bot_id?: string;
  user?: string;
  text?: string;
  ts: string;
  thread_ts?: string;
  channel: string;
  team?: string;
  files?: SlackFileRef[];
  channel_type?: string;
}

export function registerHandlers(
  app: App,
  bot: Bot,
  options: { config: Config; logger: Logger; isKnownThread: (key: ThreadKey) => Promise<boolean> },
): void {
  const { logger } = options;
  const recent = new RecentKeys();

  const accept = (
    event: MessageLikeEvent,
    body: { event_id?: string; team_id?: string },
    botUserId: string | undefined,
    teamId: string | undefined,
    explicit = true,
  ) => {
    // Messages from bots (ourselves included) never start anything.
    if (event.bot_id !== undefined || event.user === undefined || event.user === botUserId) return undefined;
    if (event.subtype !== undefined && event.subtype !== 'file_share' && event.subtype !== 'thread_broadcast') return undefined;
    // One message can arrive as app_mention and as message, and a delivery can be retried.
    if (body.event_id !== undefined && !recent.firstTime(`event:${body.event_id}`)) return undefined;
    if (!recent.firstTime(`message:${event.channel}:${event.ts}`)) return undefined;
    const mention: Mention = {
      key: { team: body.team_id ?? event.team ?? teamId ?? 'T0', channel: event.channel, threadTs: event.thread_ts ?? event.ts },
      user: event.user,
      text: stripBotMention(event.text ?? '', botUserId),
      ts: event.ts,
      files: event.files ?? [],
      explicit,
    };
    return mention;
  };

  // Bolt has written the 200 already; starting the turn on the next turn of the event loop lets that
  // response (and other requests' acks) go out before any of the turn's work runs.
  const start = (mention: Mention) => {
    setImmediate(() => {
      bot.handleMention(mention).catch((error: unknown) => logger.error('turn failed', { error: describeError(error) }));
    });
  };

  app.event('app_mention', async ({ event, body, context }) => {
    const mention = accept(event as unknown as MessageLikeEvent, body, context.botUserId, context.teamId);
    if (mention !== undefined) start(mention);
  });

  app.event('message', async ({ event, body, context }) => {
    const message = event as unknown as MessageLikeEvent;
    // In a direct message everything is addressed to the bot: no mention needed.
    if (message.channel_type === 'im') {
      const mention = accept(message, body, context.botUserId, context.teamId);
      if (mention !== undefined) start(mention);
      return;
    }
    // Replies in a thread the bot is already in continue the conversation without a mention (setting).
    if (!options.config.replyWithoutMention) return;
    if (message.thread_ts === undefined || message.thread_ts === message.ts) return;
    if (context.botUserId !== undefined && (message.text ?? '').includes(`<@${context.botUserId}`)) return; // app_mention handles it
    const mention = accept(message, body, context.botUserId, context.teamId, false);
    if (mention !== undefined && (await options.isKnownThread(mention.key))) start(mention);
  });

  app.action(STOP_ACTION_ID, async ({ ack, body, action, client }) => {
    await ack();
    const turnId = 'value' in action && typeof action.value === 'string' ? action.value : '';
    const outcome = bot.stop(turnId, body.user.id);
    logger.info('stop requested', { outcome });
    const channel = body.channel?.id;
    if (channel === undefined) return;
    const thread = 'message' in body ? (body.message?.thread_ts as string | undefined) : undefined;
    if (outcome === 'not_allowed') {
      await client.chat.postEphemeral({
        channel,
        user: body.user.id,
        thread_ts: thread,
        text: 'Only the person who asked, or an admin, can stop this turn.',
      });
    } else if (outcome === 'not_running') {
      await client.chat.postEphemeral({ channel, user: body.user.id, thread_ts: thread, text: 'This turn has already finished.' });
    }
  });

  app.error(async (error) => {
    logger.error('slack app error', { error: describeError(error) });
  });
}

function boltLogger(logger: Logger): BoltLogger {
  let level = LogLevel.WARN;
  const order = [LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR];
  const enabled = (wanted: LogLevel) => order.indexOf(wanted) >= order.indexOf(level);
  const text = (parts: unknown[]) => parts.map((part) => (typeof part === 'string' ? part : describeError(part))).join(' ');
  return {
    debug: (...parts) => enabled(LogLevel.DEBUG) && logger.debug(text(parts), { source: 'bolt' }),
    info: (...parts) => enabled(LogLevel.INFO) && logger.info(text(parts), { source: 'bolt' }),
    warn: (...parts) => enabled(LogLevel.WARN) && logger.warn(text(parts), { source: 'bolt' }),
    error: (...parts) => enabled(LogLevel.ERROR) && logger.error(text(parts), { source: 'bolt' }),
    setLevel: (next) => {
      level = next;
    },
    getLevel: () => level,
    setName: () => {},
  };
}
