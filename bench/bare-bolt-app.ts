/**
 * The baseline of figure 1 (bench/ack-latency.ts): a bare Bolt app built by the bot's own
 * createSlackApp (so the same ExpressReceiver, options and health routes), with an app_mention
 * listener that does nothing. Started as a child process exactly like the bot (`node --import tsx`),
 * configured by the same environment variables.
 */
import { loadConfig } from '../controller/config.js';
import { silentLogger } from '../controller/logger.js';
import { checkSlackTokens } from '../controller/slack/slack-auth.js';
import { createSlackApp, HealthState } from '../controller/slack/slack-app.js';

const config = loadConfig(process.env);
// As main.ts: Slack's auth.test answer first, so Bolt starts without calling it again.
const { identity, problems } = await checkSlackTokens(config.slack);
if (identity === undefined) throw new Error(problems.join('\n'));
const slack = createSlackApp(config, silentLogger, new HealthState(), identity);
slack.app.event('app_mention', async () => {});
await slack.start();
process.on('SIGTERM', () => {
  void slack.stop().finally(() => process.exit(0));
});
