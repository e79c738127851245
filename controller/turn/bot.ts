import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
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
import { DeliveryRecords } from '../workspace/deliveries.js';
import type { TurnJournal } from '../workspace/held-lease.js';
import { StreamPacer } from '../slack/stream-pacer.js';
import { threadPath, type ThreadKey } from '../workspace/thread-key.js';
import { ThreadLeases } from '../workspace/thread-lease.js';
import type { WorkspaceStore } from '../workspace/workspace.js';
import { runDownloadCommand } from './commands/download.js';
import { runNotebookCommand } from './commands/notebook.js';
import { HELP_TEXT, parseCommand, type Command } from './commands/parse-command.js';
import { runTurn, type TurnDependencies } from './run-turn.js';
import { RunningTurns, stopReply } from './running-turns.js';
import { StatusEdits } from './status-edits.js';
import { tellInterrupted } from './interrupted-turn.js';
import { ThreadScheduler } from './thread-scheduler.js';
import { failureText, TurnInterruption } from './turn-ending.js';
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
  /** This instance's id in the store's leases (default: host, process and a random part). */
  instanceId?: string;
}

const NOT_ALLOWED_TEXT = "Sorry, I'm not enabled for you in this channel. Ask the people who run me to add it to the allowlist.";
const QUEUED_TEXT = ":inbox_tray: Got it — I'll get to this after the current turn in this thread.";

/**
 * Routes mentions: de-duplication across instances (workspace/deliveries.ts), access checks (ALLOWED_CHANNELS,
 * ALLOWED_USERS, ADMIN_USERS), commands that need no model, one turn at a time per thread across instances
 * (thread-scheduler.ts; later mentions queue and are told so), Stop, the turns that an instance that went away
 * left unfinished, and the one catch-all: whatever fails while a mention is handled is logged as "turn failed"
 * and told in the thread in one line. Each mention ends with a debug line `mention done` (tests count them).
 */
export class Bot implements MentionHandler {
  private readonly scheduler: ThreadScheduler;
  private readonly deliveries: DeliveryRecords;
  private readonly running: RunningTurns;
  private readonly statusEdits = new StatusEdits();
  private readonly turnDependencies: TurnDependencies;

  constructor(private readonly deps: BotDependencies) {
    const { config, model, sandbox, systemPrompt, store, logger } = deps;
    const instance = deps.instanceId ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
    this.deliveries = new DeliveryRecords(store.records, instance);
    const leases = new ThreadLeases<Mention>(store.records, { instance, leaseMs: config.coordination.leaseMs, now: Date.now });
    this.scheduler = new ThreadScheduler(
      leases,
      { run: (mention, turn) => this.execute(mention, turn), recover: (journal) => this.recover(journal) },
      { maxConcurrentTurns: config.limits.maxConcurrentTurns, leaseMs: config.coordination.leaseMs, sweepMs: config.coordination.sweepMs, logger },
    );
    this.running = new RunningTurns(config.access.adminUsers);
    const pacer = new StreamPacer(config.statusIntervalMs);
    this.turnDependencies = { config, model, sandbox, systemPrompt, statusEdits: this.statusEdits, pacer };
  }

  /**
   * Handles one mention. Resolves when its turn (or command) is done here, or once it is queued behind a turn
   * another instance runs; never rejects: errors are told in the thread.
   */
  async handleMention(mention: Mention): Promise<void> {
    let log = this.deps.logger.child({ user: mention.user });
    let thread: SlackThread | undefined;
    let outcome = 'failed';
    try {
      const path = threadPath(mention.key);
      log = this.deps.logger.child({ thread: path, user: mention.user });
      thread = this.deps.threads(mention.key.channel, mention.key.threadTs, log);
      outcome = await this.route(mention, thread, log);
    } catch (error) {
      log.error('turn failed', { error: describeError(error) });
      if (thread !== undefined) await postLongText(thread, failureText(error)).catch(() => {});
    } finally {
      // A mention handed to the scheduler is done when its turn is (execute and recover say so).
      if (outcome !== 'scheduled') log.debug('mention done', { ts: mention.ts, outcome });
    }
  }

  /** Stop: the turn runs here, or on another instance (then it stops at that instance's next lease renewal). */
  async stopTurn(turnId: string, user: string): Promise<string | undefined> {
    let outcome = this.running.stop(turnId, user);
    if (outcome === 'not_running') outcome = await this.scheduler.requestStop(turnId, user, (mention) => this.running.mayStop(mention.user, user));
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
    let outcome = this.running.stopThread(threadPath(key), user);
    if (outcome === 'not_running') outcome = await this.scheduler.requestThreadStop(key, user, (mention) => this.running.mayStop(mention.user, user));
    log.info('stop requested', { outcome, from: 'agent_session_stopped' });
    if (outcome !== 'stopped') await setSessionStatus(this.deps.threads(key.channel, key.threadTs, log), outcome === 'not_allowed' ? 'processing' : 'active', log);
    return stopReply(outcome);
  }

  async knowsThread(key: ThreadKey): Promise<boolean> {
    return (await this.deps.store.open(key).readState(HISTORY_STATE)) !== undefined;
  }

  /** Starts looking for turns that instances which went away left unfinished (now, then periodically). */
  start(): void {
    this.scheduler.start();
  }

  /** Shutdown begins: this instance takes no new turn, and hands each thread over after its running turn. */
  close(): void {
    this.scheduler.close();
  }

  /** Resolves when every turn this instance took is done and every status message has its final edit. */
  async drain(): Promise<void> {
    await this.scheduler.drain();
    await this.statusEdits.settle();
  }

  /** Cuts every running turn short (shutdown): each ends telling its thread it was interrupted. */
  stopAll(): void {
    this.running.stopAll(new TurnInterruption('shutdown'));
  }

  /** The turns still running when the process must exit: handed to the other instances, which tell their threads. */
  async handOver(): Promise<void> {
    await this.scheduler.handOverAll();
  }

  private async route(mention: Mention, thread: SlackThread, log: Logger): Promise<string> {
    const { team, channel } = mention.key;
    if (!(await this.deliveries.firstDelivery({ eventId: mention.eventId, team, channel, ts: mention.ts }))) {
      log.info('mention delivered again: ignored', { eventId: mention.eventId });
      return 'duplicate';
    }
    if (!this.isAllowed(mention)) {
      log.info('mention refused by allowlist', { channel: mention.key.channel });
      if (mention.explicit === false) return 'refused'; // a plain reply in a thread: stay quiet
      await thread.post({ text: NOT_ALLOWED_TEXT });
      return 'refused';
    }
    // An empty mention is a request for help, unless its message has files (the event may have left them out).
    if (parseCommand(mention.text) === 'empty' && mention.files.length === 0 && !(await hasFiles(thread, mention.ts))) {
      await thread.post({ text: HELP_TEXT });
      return 'help';
    }
    const { queued, done } = await this.scheduler.submit(mention);
    if (queued) await thread.post({ text: QUEUED_TEXT });
    await done;
    return 'scheduled';
  }

  /** One mention's turn or command, run by the scheduler on the instance holding the thread's lease. */
  private async execute(mention: Mention, turn: { id: string; signal: AbortSignal; onStatusPosted: (ts: string) => void }): Promise<void> {
    const log = this.deps.logger.child({ thread: threadPath(mention.key), user: mention.user });
    const thread = this.deps.threads(mention.key.channel, mention.key.threadTs, log);
    let outcome = 'done';
    try {
      await this.run(parseCommand(mention.text), mention, thread, log, turn);
    } catch (error) {
      outcome = 'failed';
      log.error('turn failed', { error: describeError(error) });
      await postLongText(thread, failureText(error)).catch(() => {});
    } finally {
      log.debug('mention done', { ts: mention.ts, outcome });
    }
  }

  private async run(command: Command, mention: Mention, thread: SlackThread, log: Logger, scheduled: { id: string; signal: AbortSignal; onStatusPosted: (ts: string) => void }): Promise<void> {
    const workspace = this.deps.store.open(mention.key);
    if (command === 'download') {
      await runDownloadCommand({ thread, workspace, logger: log });
      return;
    }
    if (command === 'notebook') return runNotebookCommand({ thread, workspace, logger: log });
    // Only model turns have a Stop control; the button carries the turn's id from the journal, Slack's names the thread.
    const turn = this.running.start(mention.user, { id: scheduled.id, thread: threadPath(mention.key) });
    try {
      const signal = AbortSignal.any([turn.signal, scheduled.signal]);
      await runTurn(this.turnDependencies, { mention, thread, workspace, turnId: turn.id, signal, log, onStatusPosted: scheduled.onStatusPosted });
    } finally {
      turn.finish();
    }
  }

  /** A turn left unfinished by an instance that went away: told in its thread (interrupted-turn.ts). */
  private async recover(journal: TurnJournal<Mention>): Promise<void> {
    const mention = journal.entry;
    const log = this.deps.logger.child({ thread: threadPath(mention.key), user: mention.user });
    try {
      const thread = this.deps.threads(mention.key.channel, mention.key.threadTs, log);
      const recordInHistory = parseCommand(mention.text) === undefined;
      await tellInterrupted({ thread, workspace: this.deps.store.open(mention.key), log, recordInHistory }, journal);
      log.info('interrupted turn told', { ts: mention.ts });
    } catch (error) {
      log.error('interrupted turn not told', { error: describeError(error) });
    } finally {
      log.debug('mention done', { ts: mention.ts, outcome: 'interrupted' });
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
