import { WebAPIPlatformError, WebClient } from '@slack/web-api';
import type { Config } from '../config.js';

/**
 * Slack's answer to the tokens, asked once at start-up, so that a token Slack rejects stops the bot with one line
 * naming its variable instead of a stack trace. (Bolt 5 sends `auth.test` from inside `new App()` and keeps the
 * promise; when it rejects, nothing awaits it and Node prints the unhandled rejection and exits. Passing the
 * identity found here to `new App()` lets Bolt skip that call: slack-app.ts.)
 *
 * - SLACK_BOT_TOKEN: `auth.test` (https://docs.slack.dev/reference/methods/auth.test).
 * - SLACK_APP_TOKEN (Socket Mode): `apps.connections.open`, the call Socket Mode starts with
 *   (https://docs.slack.dev/reference/methods/apps.connections.open). The URL it returns is left unused.
 */

export interface SlackIdentity {
  botId: string;
  botUserId: string;
}

export type SlackCheck = { identity: SlackIdentity; problems: [] } | { identity?: undefined; problems: string[] };

/** What the token errors mean to an operator, and what to do (the methods' documented errors). */
const TOKEN_ERRORS: Record<string, string> = {
  not_authed: 'no token reached Slack (the variable is empty?)',
  invalid_auth: 'copy it again from the app settings (a typo, another workspace\'s token, a regenerated token, or an IP allowlist that refuses this host)',
  token_revoked: 'the app was uninstalled or the token revoked: reinstall the app and copy the new token',
  account_inactive: 'the bot user or the workspace was deactivated',
  token_expired: 'token rotation is on: turn it off in the app settings (OAuth & Permissions) and reinstall',
  not_allowed_token_type: 'this method does not take this kind of token',
  missing_scope: 'the token lacks a scope this method needs',
};

const WHERE: Record<'SLACK_BOT_TOKEN' | 'SLACK_APP_TOKEN', string> = {
  SLACK_BOT_TOKEN: 'the Bot User OAuth Token (xoxb-) under OAuth & Permissions',
  SLACK_APP_TOKEN: 'an app-level token (xapp-) with the connections:write scope under Basic Information → App-Level Tokens',
};

/** Checks the bot token and, in Socket Mode, the app token, at the same time. */
export async function checkSlackTokens(slack: Config['slack']): Promise<SlackCheck> {
  const clientOptions = {
    ...(slack.apiUrl === undefined ? {} : { slackApiUrl: slack.apiUrl }),
    // A few quick retries for network errors and 5xx; @slack/web-api's default keeps trying for half an hour.
    retryConfig: { retries: 3, factor: 2, minTimeout: 1000, maxTimeout: 8000 },
    timeout: 15_000,
  };
  const bot = new WebClient(slack.botToken, clientOptions);
  const [identity, appProblem] = await Promise.all([
    bot.auth.test().then(
      (result) =>
        result.bot_id !== undefined && result.user_id !== undefined
          ? { botId: result.bot_id, botUserId: result.user_id }
          : `Configuration error: SLACK_BOT_TOKEN is not a bot token (auth.test names no bot): use ${WHERE.SLACK_BOT_TOKEN}`,
      (error: unknown) => tokenProblem('SLACK_BOT_TOKEN', 'auth.test', error),
    ),
    slack.appToken === undefined
      ? undefined
      : new WebClient(slack.appToken, clientOptions).apps.connections.open().then(
          () => undefined,
          (error: unknown) => tokenProblem('SLACK_APP_TOKEN', 'apps.connections.open', error),
        ),
  ]);
  const problems = [typeof identity === 'string' ? identity : undefined, appProblem].filter((problem) => problem !== undefined);
  if (problems.length > 0 || typeof identity === 'string') return { problems };
  return { identity, problems: [] };
}

function tokenProblem(variable: 'SLACK_BOT_TOKEN' | 'SLACK_APP_TOKEN', method: string, error: unknown): string {
  if (error instanceof WebAPIPlatformError) {
    const code = error.data.error;
    const advice = TOKEN_ERRORS[code] ?? 'see the method\'s documentation for this error';
    return `Configuration error: ${variable} was rejected by Slack (${method}: ${code}): ${advice}; it must be ${WHERE[variable]}`;
  }
  // Network errors, HTTP errors and rate limits after the client's own retries: Slack (or the way to it) is down.
  const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
  return `Start-up error: Slack did not answer ${method} for ${variable} (${message}): check the network and SLACK_API_URL`;
}
