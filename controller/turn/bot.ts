import { randomUUID } from 'node:crypto';
import type { WebClient } from '@slack/web-api';
import type OpenAI from 'openai';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { describeError } from '../errors.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { WorkspaceStore } from '../workspace/workspace.js';
import { threadPath, type ThreadKey } from '../workspace/thread-key.js';
import { TurnQueue } from './turn-queue.js';
import { TurnRunner } from './run-turn.js';
import { parseCommand } from './commands/parse-command.js';
import { postLongText } from '../slack/long-text.js';

/** A mention (or a thread reply) as the bot sees it, whatever the transport. */
export interface Mention {
  key: ThreadKey;
  user: string;
  /** The text with the bot's own mention removed. */
  text: string;
  /** ts of the message itself (the thread is key.threadTs). */
  ts: string;
  files: SlackFileRef[];
  /** False for a thread reply without a mention (REPLY_WITHOUT_MENTION): such replies never get a refusal line. */
  explicit?: boolean;
}

/** The parts of a Slack file object that we use. */
export interface SlackFileRef {
  id: string;
  name?: string;
  title?: string;
  size?: number;
  mimetype?: string;
  mode?: string;
  url_private_download?: string;
  url_private?: string;
}

export interface BotDependencies {
  config: Config;
  client: WebClient;
  openai: OpenAI;
  store: WorkspaceStore;
  sandbox: Sandbox;
  systemPrompt: string;
  logger: Logger;
  /** Minimum time between two edits of a status message (Slack rate limits). */
  statusIntervalMs?: number;
}

export const HELP_TEXT = [
  "Hi! I'm a code interpreter: mention me with a question or a file, and I'll write and run Python in this thread to answer.",
  '• Attach CSV, Excel, PDF or image files to a mention and ask about them.',
  '• Each thread has its own files and memory; mention me again in the thread to continue.',
  '• `download` (or `ダウンロード`) posts every file of this thread; `notebook` (or `ノートブック`) posts the work as a Jupyter notebook.',
].join('\n');

/**
 * Routes mentions to turns: access checks, commands that need no model, one turn at a time per
 * thread (later mentions queue and are told so), and Stop.
 */
export class Bot {
  readonly queue: TurnQueue;
  private readonly runner: TurnRunner;
  private readonly running = new Map<string, { controller: AbortController; user: string }>();

  constructor(private readonly deps: BotDependencies) {
    this.queue = new TurnQueue(deps.config.limits.maxConcurrentTurns);
    this.runner = new TurnRunner(deps);
  }

  /** Handles one mention. Resolves when its turn (or command) is done; errors are told in the thread. */
  async handleMention(mention: Mention): Promise<void> {
    const { client, logger } = this.deps;
    const thread = threadPath(mention.key);
    const log = logger.child({ thread, user: mention.user });
    const reply = (text: string) => client.chat.postMessage({ channel: mention.key.channel, thread_ts: mention.key.threadTs, text });

    try {
      if (!this.isAllowed(mention)) {
        log.info('mention refused by allowlist', { channel: mention.key.channel });
        if (mention.explicit === false) return; // a plain reply in a thread: stay quiet
        await reply("Sorry, I'm not enabled for you in this channel. Ask the people who run me to add it to the allowlist.");
        return;
      }
      const command = parseCommand(mention.text);
      if (command === 'empty' && mention.files.length === 0) {
        await reply(HELP_TEXT);
        return;
      }
      if (this.queue.depth(thread) > 0) {
        await reply(":inbox_tray: Got it — I'll get to this after the current turn in this thread.");
      }
      await this.queue.enqueue(thread, async () => {
        if (command === 'download') return this.runner.download(mention, log);
        if (command === 'notebook') return this.runner.notebook(mention, log);
        // Only model turns have a status message with a Stop button.
        const turnId = randomUUID();
        const controller = new AbortController();
        this.running.set(turnId, { controller, user: mention.user });
        try {
          await this.runner.run(mention, turnId, controller.signal, log);
        } finally {
          this.running.delete(turnId);
        }
      });
    } catch (error) {
      log.error('mention failed', { error: describeError(error) });
      await postLongText(client, mention.key.channel, mention.key.threadTs, ':warning: Something went wrong on my side and this message was not handled. Please try again.').catch(
        () => {},
      );
    }
  }

  /**
   * Stops a running turn. Only the person who started it or an admin may. Returns what happened,
   * so the caller can tell the clicker.
   */
  stop(turnId: string, user: string): 'stopped' | 'not_allowed' | 'not_running' {
    const turn = this.running.get(turnId);
    if (turn === undefined) return 'not_running';
    if (turn.user !== user && !this.deps.config.access.adminUsers.includes(user)) return 'not_allowed';
    turn.controller.abort();
    return 'stopped';
  }

  /** Resolves when every queued turn is done and every status message has its final edit. */
  async drain(): Promise<void> {
    await this.queue.onIdle();
    await this.runner.settle();
  }

  /** Stops every running turn (shutdown). */
  stopAll(): void {
    for (const turn of this.running.values()) turn.controller.abort();
  }

  private isAllowed(mention: Mention): boolean {
    const { allowedChannels, allowedUsers, adminUsers } = this.deps.config.access;
    if (adminUsers.includes(mention.user)) return true;
    if (allowedChannels.length > 0 && !allowedChannels.includes(mention.key.channel)) return false;
    if (allowedUsers.length > 0 && !allowedUsers.includes(mention.user)) return false;
    return true;
  }
}
