import type { AgentEvent } from '../agent/agent-loop.js';
import { describeError } from '../errors.js';
import type { StepResult } from '../sandbox/sandbox.js';
import { postLongText } from '../slack/long-text.js';
import { toSlackMrkdwn } from '../slack/mrkdwn.js';
import { SlackStream } from '../slack/slack-stream.js';
import { StatusMessage } from '../slack/status-message.js';
import { showOnStatus, type TurnEnd, type TurnView, type ViewContext } from './turn-view.js';

type StepStarted = Extract<AgentEvent, { type: 'step_started' }>;

/**
 * A turn as one streamed reply (SLACK_STREAMING=auto): each code step is a task card (its title; the code as
 * details, once, when it starts; the output's tail when it ends, `complete` or `error`), and the model's text
 * streams in as it writes it (slack/slack-stream.ts does the timing, the limits and Slack's rate tiers).
 *
 * The Stop control is Slack's own while the session is `processing` (turn-view.ts, setSessionStatus). Where Slack
 * does not show it (the status could not be set, or the app is not subscribed to agent_session_stopped), a small
 * status message carries the Stop button, as in the status-message way.
 *
 * When Slack will not stream (chat.startStream refused, or a stream that ended could not be continued), the rest of
 * the turn falls back to the status message, the steps so far replayed on it, and the text Slack never got is
 * posted as ordinary replies at the end.
 */
export class StreamView implements TurnView {
  readonly streamsText = true;
  private readonly stream: SlackStream;
  private readonly steps: Array<{ started: StepStarted; result?: StepResult }> = [];
  private status: StatusMessage | undefined;
  private statusStarted: Promise<void> = Promise.resolve();
  private fellBack = false;
  private wroteText = false;
  private separate = false;

  constructor(
    private readonly context: ViewContext,
    private readonly options: { nativeStop: boolean },
  ) {
    this.stream = new SlackStream(context.thread, {
      recipient: { userId: context.mention.user, teamId: context.mention.key.team },
      pacer: context.pacer,
      logger: context.log,
      onBroken: () => this.fallBack(),
    });
  }

  async start(): Promise<void> {
    if (!this.options.nativeStop) await this.openStatus();
  }

  show(event: AgentEvent): void {
    if (this.status !== undefined) showOnStatus(this.status, event);
    if (event.type === 'model_call') this.separate = this.wroteText;
    else if (event.type === 'text') {
      // Each model reply's text starts a paragraph of its own (a reply before a step, then the answer).
      if (this.separate && event.text.trim() !== '') this.stream.appendText('\n\n');
      this.separate &&= event.text.trim() === '';
      this.wroteText ||= event.text.trim() !== '';
      this.stream.appendText(event.text);
    }
    else if (event.type === 'step_started') {
      this.steps.push({ started: event });
      this.stream.updateTask({ id: `step-${event.index}`, title: event.title, status: 'in_progress', details: event.code });
    } else if (event.type === 'step_finished') {
      const step = this.steps.find((candidate) => candidate.started.index === event.index);
      if (step !== undefined) step.result = event.result;
      const title = step?.started.title ?? `Step ${event.index}`;
      this.stream.updateTask({ id: `step-${event.index}`, title, status: event.result.error === null ? 'complete' : 'error', output: outputTail(event.result) });
    }
  }

  async finish(end: TurnEnd): Promise<void> {
    const { thread, statusEdits, log } = this.context;
    if (end.endingMessage !== undefined) this.stream.appendText(`${this.wroteText ? '\n\n' : ''}${end.endingMessage}`);
    this.stream.appendText(end.footer);
    const rest = await this.stream.close();
    await this.statusStarted;
    if (this.status !== undefined) statusEdits.track(this.status.finish(end.headline), log);
    // What Slack never got (the stream could not start or continue) is posted as ordinary replies.
    if (rest.trim() !== '') await postLongText(thread, toSlackMrkdwn(rest), { fullMarkdown: rest });
  }

  fail(headline: string): void {
    const { statusEdits, log } = this.context;
    const closing = this.stream.close().then(async () => {
      await this.statusStarted;
      await this.status?.finish(headline);
    });
    statusEdits.track(closing, log);
  }

  /** Slack stopped taking the stream: the status message shows the rest of the turn (with a Stop button). */
  private fallBack(): void {
    if (this.fellBack) return;
    this.fellBack = true;
    this.context.log.info('streaming unavailable: status message and replies instead');
    if (this.status !== undefined) this.status.expand();
    else void this.openStatus();
  }

  /** The status message: compact (headline and Stop button) beside a working stream, in full once it fell back. */
  private async openStatus(): Promise<void> {
    const { thread, turnId, config, log } = this.context;
    const status = new StatusMessage(thread, turnId, config.statusIntervalMs, log, !this.fellBack);
    this.status = status;
    for (const step of this.steps) {
      showOnStatus(status, step.started);
      if (step.result !== undefined) status.stepFinished(step.started.index, step.result);
    }
    this.statusStarted = status
      .start()
      .then((ts) => {
        if (ts !== undefined) this.context.onStatusPosted?.(ts);
      })
      .catch((error: unknown) => log.warn('status message not posted', { error: describeError(error) }));
    await this.statusStarted;
  }
}

/** The end of what a step printed (or its error), for the task card; the table note when it showed one. */
function outputTail(result: StepResult): string {
  const text = result.error === null ? result.stdout : `${result.error.name}: ${result.error.value}`;
  const lines = text.split('\n').filter((line) => line.trim() !== '').slice(-3);
  const tables = (result.displays ?? []).length;
  if (tables > 0) lines.push(tables === 1 ? '(table shown below)' : `(${tables} tables shown below)`);
  return lines.length === 0 ? '(no output)' : lines.join('\n');
}
