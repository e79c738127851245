import type { ChatModel } from '../agent/chat-model.js';
import { HISTORY_STATE } from '../agent/history.js';
import type { Config } from '../config.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { MentionHandler } from '../slack/listeners.js';
import { postLongText } from '../slack/long-text.js';
import type { Mention } from '../slack/mention.js';
import type { SlackThread, SlackThreadFactory } from '../slack/slack-thread.js';
import { StreamPacer } from '../slack/stream-pacer.js';
import { threadPath, type ThreadKey } from '../workspace/thread-key.js';
import type { WorkspaceStore } from '../workspace/workspace.js';
import { runDownloadCommand } from './commands/download.js';
import { runNotebookCommand } from './commands/notebook.js';
import { HELP_TEXT, parseCommand, type Command } from './commands/parse-command.js';
import { runTurn, type TurnDependencies } from './run-turn.js';
import { RunningTurns, stopReply } from './running-turns.js';
import { StatusEdits } from './status-edits.js';
import { failureText } from './turn-ending.js';
import { TurnQueue } from './turn-queue.js';
import { setSessionStatus } from './turn-view.js';

export interface BotDependencies {
  config: Config;
  /** Binds a SlackThread to each mention's thread. */
  threads: SlackThreadFactory;
  model: ChatModel;
  store: WorkspaceStore;
  sandbox: Sandbox;
  systemPrompt: string;
  logger: Logger;
}

const NOT_ALLOWED_TEXT = "Sorry, I'm not enabled for you in this channel. Ask the people who run me to add it to the allowlist.";
const QUEUED_TEXT = ":inbox_tray: Got it — I'll get to this after the current turn in this thread.";

/**
 * Routes mentions: access checks (ALLOWED_CHANNELS, ALLOWED_USERS, ADMIN_USERS), commands that need no model,
 * one turn at a time per thread (later mentions queue and are told so), Stop, and the one catch-all: whatever
 * fails while a mention is handled is logged as "turn failed" and told in the thread in one line.
 */
export class Bot implements MentionHandler {
  private readonly queue: TurnQueue;
  private readonly running: RunningTurns;
  private readonly statusEdits = new StatusEdits();
  private readonly turnDependencies: TurnDependencies;

  constructor(private readonly deps: BotDependencies) {
    this.queue = new TurnQueue(deps.config.limits.maxConcurrentTurns);
    this.running = new RunningTurns(deps.config.access.adminUsers);
    const { config, model, sandbox, systemPrompt } = deps;
    const pacer = new StreamPacer(config.statusIntervalMs);
    this.turnDependencies = { config, model, sandbox, systemPrompt, statusEdits: this.statusEdits, pacer };
  }

  /** Handles one mention. Resolves when its turn (or command) is done; never rejects: errors are told in the thread. */
  async handleMention(mention: Mention): Promise<void> {
    let log = this.deps.logger.child({ user: mention.user });
    let thread: SlackThread | undefined;
    try {
      const path = threadPath(mention.key);
      log = this.deps.logger.child({ thread: path, user: mention.user });
      thread = this.deps.threads(mention.key.channel, mention.key.threadTs, log);
      await this.route(mention, path, thread, log);
    } catch (error) {
      log.error('turn failed', { error: describeError(error) });
      if (thread !== undefined) await postLongText(thread, failureText(error)).catch(() => {});
    }
  }

  stopTurn(turnId: string, user: string): string | undefined {
    const outcome = this.running.stop(turnId, user);
    this.deps.logger.info('stop requested', { outcome });
    return stopReply(outcome);
  }

  /**
   * Slack's own Stop control, exactly like the button. Slack stops the thread's streams itself and leaves the
   * session `processing`: when the turn goes on (someone else pressed it) it stays `processing`, set again so the
   * control comes back; when nothing runs the session goes back to `active`. A stopped turn ends as every Stop.
   */
  async stopThreadTurn(key: ThreadKey, user: string): Promise<string | undefined> {
    const log = this.deps.logger.child({ thread: threadPath(key), user });
    const outcome = this.running.stopThread(threadPath(key), user);
    log.info('stop requested', { outcome, from: 'agent_session_stopped' });
    if (outcome !== 'stopped') await setSessionStatus(this.deps.threads(key.channel, key.threadTs, log), outcome === 'not_allowed' ? 'processing' : 'active', log);
    return stopReply(outcome);
  }

  async knowsThread(key: ThreadKey): Promise<boolean> {
    return (await this.deps.store.open(key).readState(HISTORY_STATE)) !== undefined;
  }

  /** Resolves when every queued turn is done and every status message has its final edit. */
  async drain(): Promise<void> {
    await this.queue.onIdle();
    await this.statusEdits.settle();
  }

  /** Stops every running turn (shutdown). */
  stopAll(): void {
    this.running.stopAll();
  }

  private async route(mention: Mention, path: string, thread: SlackThread, log: Logger): Promise<void> {
    if (!this.isAllowed(mention)) {
      log.info('mention refused by allowlist', { channel: mention.key.channel });
      if (mention.explicit === false) return; // a plain reply in a thread: stay quiet
      await thread.post({ text: NOT_ALLOWED_TEXT });
      return;
    }
    const command = parseCommand(mention.text);
    // An empty mention is a request for help, unless its message has files (the event may have left them out).
    if (command === 'empty' && mention.files.length === 0 && !(await hasFiles(thread, mention.ts))) {
      await thread.post({ text: HELP_TEXT });
      return;
    }
    if (this.queue.depth(path) > 0) await thread.post({ text: QUEUED_TEXT });
    await this.queue.enqueue(path, () => this.run(command, mention, thread, log));
  }

  private async run(command: Command, mention: Mention, thread: SlackThread, log: Logger): Promise<void> {
    const workspace = this.deps.store.open(mention.key);
    if (command === 'download') {
      await runDownloadCommand({ thread, workspace, logger: log });
      return;
    }
    if (command === 'notebook') return runNotebookCommand({ thread, workspace, logger: log });
    // Only model turns have a status message with a Stop button.
    const turn = this.running.start(mention.user, threadPath(mention.key));
    try {
      await runTurn(this.turnDependencies, { mention, thread, workspace, turnId: turn.id, signal: turn.signal, log });
    } finally {
      turn.finish();
    }
  }

  private isAllowed(mention: Mention): boolean {
    const { allowedChannels, allowedUsers, adminUsers } = this.deps.config.access;
    if (adminUsers.includes(mention.user)) return true;
    if (allowedChannels.length > 0 && !allowedChannels.includes(mention.key.channel)) return false;
    if (allowedUsers.length > 0 && !allowedUsers.includes(mention.user)) return false;
    return true;
  }
}

/** The message has files on Slack's side (read back: events may arrive before their files). */
async function hasFiles(thread: SlackThread, messageTs: string): Promise<boolean> {
  return (await thread.messageFiles(messageTs).catch(() => [])).length > 0;
}
