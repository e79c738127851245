/**
 * The baseline of figure 1 (bench/ack-latency.ts): a bare Bolt app built by the bot's own
 * createSlackApp (so the same HTTPReceiver, options and /healthz route), with an app_mention
 * listener that does nothing. Started as a child process exactly like the bot (`node --import tsx`),
 * configured by the same environment variables.
 */
import { loadConfig } from '../controller/config.js';
import { silentLogger } from '../controller/logger.js';
import { createSlackApp } from '../controller/slack/app.js';

const config = loadConfig(process.env);
const app = createSlackApp(config, silentLogger);
app.event('app_mention', async () => {});
await app.start(config.slack.port);
process.on('SIGTERM', () => {
  void app.stop().finally(() => process.exit(0));
});
