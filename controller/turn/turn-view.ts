import type { AgentEvent } from '../agent/agent-loop.js';
import type { Config } from '../config.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { postLongText } from '../slack/long-text.js';
import type { Mention } from '../slack/mention.js';
import { toSlackMrkdwn } from '../slack/mrkdwn.js';
import type { SlackThread } from '../slack/slack-thread.js';
import { StatusMessage } from '../slack/status-message.js';
import type { StreamPacer } from '../slack/stream-pacer.js';
import type { StatusEdits } from './status-edits.js';

/**
 * How a running turn shows itself in the thread, and how it ends there. Two ways:
 * - streamed (stream-view.ts, SLACK_STREAMING=auto): one streamed reply with each step as a task card and the
 *   answer's text as the model writes it; Slack's own Stop control while the session is `processing`;
 * - the status message and replies (StatusView, SLACK_STREAMING=off, or when Slack will not stream): a status
 *   message edited as steps run, with a Stop button, then the answer as messages.
 * A streamed turn that Slack stops taking falls back to the second way for what is left, losing nothing.
 */
export interface TurnView {
  /** The model should stream its text: this view shows it as it comes. */
  readonly streamsText: boolean;
  show(event: AgentEvent): void;
  /** The answer and the ending in the thread; the status's last edit may follow later (tracked in StatusEdits). */
  finish(end: TurnEnd): Promise<void>;
  /** The turn failed on the bot's side: nothing may keep saying it is working. */
  fail(headline: string): void;
}

export interface TurnEnd {
  /** The status message's last line, e.g. `:white_check_mark: Done · 2 steps · 4.1 s`. */
  headline: string;
  /** The model's answer (Markdown); '' when the turn ended without one. */
  answer: string;
  /** Why the turn ended early, for the thread. */
  endingMessage?: string;
  /** USAGE_FOOTER's line ('' when off). */
  footer: string;
}

export interface ViewContext {
  config: Config;
  pacer: StreamPacer;
  statusEdits: StatusEdits;
  mention: Mention;
  thread: SlackThread;
  turnId: string;
  log: Logger;
  /** The status message is posted: its ts goes into the thread's journal, for an instance that must tell it interrupted. */
  onStatusPosted?: (ts: string) => void;
}

/**
 * agents.sessions.setStatus for the turn's thread (https://docs.slack.dev/ai/agent-sessions): `processing` while it
 * runs (Slack shows its own Stop control then), `active` after. Resolves true when Slack shows that control; a
 * workspace or app without agent sessions is not an error, only a Stop button's reason to stay.
 */
export async function setSessionStatus(thread: SlackThread, status: 'processing' | 'active', log: Logger, title?: string): Promise<boolean> {
  try {
    const firstLine = title?.split('\n').find((line) => line.trim() !== '')?.trim().slice(0, 200);
    const shown = await thread.setSessionStatus(status, firstLine === undefined ? {} : { title: firstLine });
    if (!shown) log.warn('agent_session_stopped is not subscribed: Slack shows no Stop control');
    return shown;
  } catch (error) {
    log.debug('agent session status not set', { status, error: describeError(error) });
    return false;
  }
}

/** Today's way: the status message with its steps and Stop button, then the answer as messages. */
export class StatusView implements TurnView {
  readonly streamsText = false;
  private readonly status: StatusMessage;

  constructor(private readonly context: ViewContext) {
    this.status = new StatusMessage(context.thread, context.turnId, context.config.statusIntervalMs, context.log);
  }

  async start(): Promise<void> {
    const ts = await this.status.start();
    if (ts !== undefined) this.context.onStatusPosted?.(ts);
  }

  show(event: AgentEvent): void {
    showOnStatus(this.status, event);
  }

  async finish(end: TurnEnd): Promise<void> {
    const { thread, statusEdits, log } = this.context;
    statusEdits.track(this.status.finish(end.headline), log);
    await postAnswer(thread, end, end.answer);
  }

  fail(headline: string): void {
    this.context.statusEdits.track(this.status.finish(headline), this.context.log);
  }
}

/** A step's progress on a status message. */
export function showOnStatus(status: StatusMessage, event: AgentEvent): void {
  if (event.type === 'model_call') status.thinking();
  else if (event.type === 'step_started') status.stepStarted(event.index, event.title, event.code, event.language);
  else if (event.type === 'step_finished') status.stepFinished(event.index, event.result);
}

/** The answer (Markdown, shown in Slack's mrkdwn; long answers attached) and the ending line, as messages. */
async function postAnswer(thread: SlackThread, end: Pick<TurnEnd, 'endingMessage' | 'footer'>, answer: string): Promise<void> {
  const answered = answer.trim() !== '';
  if (answered) await postLongText(thread, toSlackMrkdwn(answer) + end.footer, { fullMarkdown: answer });
  if (end.endingMessage !== undefined) await postLongText(thread, end.endingMessage + (answered ? '' : end.footer));
}
