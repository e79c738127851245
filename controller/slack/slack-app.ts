import type { Server } from 'node:http';
import { App, ExpressReceiver, LogLevel, type Logger as BoltLogger } from '@slack/bolt';
import express, { type Request, type Response, type Router } from 'express';
import type { Config } from '../config.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { SlackIdentity } from './slack-auth.js';

/**
 * Liveness and readiness as operators and Cloud Run see them. `/health` is the route to use on Cloud Run
 * (it intercepts paths ending in "z"); `/healthz` stays for local use. `/ready` answers 503 before the
 * bot has started and while it drains at shutdown.
 */
export class HealthState {
  ready = false;
}

function healthRouter(state: HealthState): Router {
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

/** The Bolt app and the HTTP server around it (express in both modes); its listeners are in listeners.ts. */
export interface SlackApp {
  app: App;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * HTTP mode: Bolt's ExpressReceiver serves `POST /slack/events` (signature checked) on an express app that also
 * serves the health routes. Socket Mode: Bolt talks to Slack over a WebSocket and a small express app serves only
 * the health routes on PORT (Cloud Run and operators still probe it). `identity` is what `auth.test` answered at
 * start-up (slack-auth.ts): given it, Bolt does not call `auth.test` again from its constructor, where a rejection
 * would go unhandled.
 */
export function createSlackApp(config: Config, logger: Logger, health: HealthState, identity: SlackIdentity): SlackApp {
  const common = {
    token: config.slack.botToken,
    botId: identity.botId,
    botUserId: identity.botUserId,
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
