import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '../../controller/config.js';
import { createLogger, type Logger } from '../../controller/logger.js';
import type { Sandbox } from '../../controller/sandbox/sandbox.js';
import type { Mention } from '../../controller/slack/mention.js';
import { Bot } from '../../controller/turn/bot.js';
import { LocalWorkspaceStore } from '../../controller/workspace/local-workspace.js';
import { RecordingSlackThreads } from './recording-slack-thread.js';
import { ScriptedModel, type ScriptedReply } from './scripted-model.js';
import { ScriptedSandbox } from './scripted-sandbox.js';

/**
 * The Bot in process, with its seams replaced at their interfaces: recording Slack threads, a scripted
 * model, a scripted (or real) sandbox, and a LocalWorkspaceStore in a temporary folder. Logs are kept in
 * `logs` (parsed JSON lines) so a test can check what was logged.
 */

/** Config as loadConfig makes it from a minimal environment (status edits at once). */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    SLACK_BOT_TOKEN: 'xoxb-test',
    SLACK_SIGNING_SECRET: 'test-secret',
    OPENAI_API_KEY: 'sk-test',
    STATUS_INTERVAL_MS: '0',
    // The status-message way unless a test asks for streams (stream tests set SLACK_STREAMING=auto).
    SLACK_STREAMING: 'off',
    ...env,
  });
}

export interface InProcessBot {
  bot: Bot;
  config: Config;
  slack: RecordingSlackThreads;
  model: ScriptedModel;
  sandbox: Sandbox;
  store: LocalWorkspaceStore;
  logs: Array<{ severity: string; message: string; [field: string]: unknown }>;
  logger: Logger;
  mention(text: string, options?: Partial<Mention> & { threadTs?: string }): Mention;
  close(): Promise<void>;
}

let tsCounter = 0;

/**
 * `sameStoreAs`: a second instance of the bot, on the first one's DATA_DIR, with the same Slack and the same
 * model (two controller processes of one deployment); it gets its own logs and instance id.
 */
export async function startBot(
  options: { script?: ScriptedReply[]; sandbox?: Sandbox; env?: Record<string, string>; sameStoreAs?: InProcessBot; instanceId?: string } = {},
): Promise<InProcessBot> {
  const first = options.sameStoreAs;
  const dataDir = first?.store.dataDir ?? (await mkdtemp(join(tmpdir(), 'oi-bot-')));
  const config = testConfig({ DATA_DIR: dataDir, ...options.env });
  const logs: InProcessBot['logs'] = [];
  const logger = createLogger({ level: 'DEBUG', write: (line) => logs.push(JSON.parse(line) as InProcessBot['logs'][number]) });
  const slack = first?.slack ?? new RecordingSlackThreads();
  const model = first?.model ?? new ScriptedModel(options.script ?? []);
  const sandbox = options.sandbox ?? first?.sandbox ?? new ScriptedSandbox();
  const store = new LocalWorkspaceStore(dataDir);
  const bot = new Bot({ config, threads: slack.factory, model, store, sandbox, systemPrompt: 'test system prompt', logger, ...(options.instanceId === undefined ? {} : { instanceId: options.instanceId }) });
  return {
    bot,
    config,
    slack,
    model,
    sandbox,
    store,
    logs,
    logger,
    mention: (text, overrides = {}) => {
      const ts = `1700000${String(++tsCounter).padStart(3, '0')}.000100`;
      const { threadTs, ...rest } = overrides;
      return { key: { team: 'T1', channel: 'C1', threadTs: threadTs ?? ts }, user: 'U1', text, ts, files: [], ...rest };
    },
    close: async () => {
      bot.close();
      await bot.drain();
      if (first === undefined) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
