import type { KnownBlock } from '@slack/types';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { StepResult } from '../sandbox/sandbox.js';
import { formatDuration } from '../text.js';
import type { SlackThread, ThreadMessage } from './slack-thread.js';
import { renderSteps, type StepView } from './status-render.js';

export const STOP_ACTION_ID = 'stop_turn';

/**
 * The one status message of a turn: posted when the turn starts, edited in place as steps run, at
 * most one edit per `intervalMs` (Slack's chat.update rate limit is about one a second per channel;
 * coalescing keeps a busy turn far below it), and left showing the steps taken.
 */
export class StatusMessage {
  private ts: string | undefined;
  private readonly steps: StepView[] = [];
  private readonly startedAt = Date.now();
  private phase: 'thinking' | 'running' | 'done' = 'thinking';
  private headline = '';
  private dirty = false;
  private lastEditAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private assistantStatus = true;

  constructor(
    private readonly thread: SlackThread,
    private readonly turnId: string,
    private readonly intervalMs: number,
    private readonly logger: Logger,
    /** Compact: a headline and the Stop button only, the steps being shown elsewhere (a streamed reply). */
    private compact = false,
  ) {}

  /** From now on the steps are shown here too (the streamed reply that showed them stopped). */
  expand(): void {
    this.compact = false;
    this.touch();
  }

  /** Posts the status message; resolves with its ts. */
  async start(): Promise<string | undefined> {
    this.ts = await this.thread.post({ text: ':hourglass_flowing_sand: Working on it…', blocks: this.blocks() });
    this.lastEditAt = Date.now();
    await this.setAssistantStatus('is working…');
    return this.ts;
  }

  thinking(): void {
    this.phase = 'thinking';
    this.touch();
  }

  stepStarted(index: number, title: string, code: string, language: string): void {
    this.phase = 'running';
    this.steps.push({ index, title, code, language, startedAt: Date.now() });
    this.touch();
  }

  stepFinished(index: number, result: StepResult): void {
    const step = this.steps.find((candidate) => candidate.index === index);
    if (step !== undefined) step.result = result;
    this.touch();
  }

  /**
   * Final edit: the steps taken and a one-line outcome; the Stop button goes away. It waits for the
   * edit interval, so callers post the answer without awaiting this first.
   */
  async finish(headline: string): Promise<void> {
    this.phase = 'done';
    this.headline = headline;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.dirty = true;
    // The final edit keeps the rate too: it often comes right after a step's edit.
    const wait = this.ts === undefined ? 0 : this.lastEditAt + this.intervalMs - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    await this.flush();
    await this.setAssistantStatus('');
  }

  private touch(): void {
    this.dirty = true;
    if (this.timer !== undefined || this.ts === undefined) return;
    const wait = Math.max(0, this.lastEditAt + this.intervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, wait);
  }

  private flush(): Promise<void> {
    this.chain = this.chain.then(async () => {
      if (!this.dirty || this.ts === undefined) return;
      // The interval counts from the end of the previous edit: then Slack sees edits at least intervalMs
      // apart however long each request took (measured from the start, a slow edit followed by a fast
      // one would arrive closer together).
      const wait = this.lastEditAt + this.intervalMs - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      this.dirty = false;
      try {
        await this.thread.update(this.ts, { text: this.fallbackText(), blocks: this.blocks() });
      } catch (error) {
        this.logger.warn('status update failed', { error: describeError(error) });
      } finally {
        this.lastEditAt = Date.now();
      }
    });
    return this.chain;
  }

  private fallbackText(): string {
    if (this.phase === 'done') return this.headline;
    return `:hourglass_flowing_sand: Working… ${this.steps.length} step${this.steps.length === 1 ? '' : 's'}`;
  }

  private blocks(): KnownBlock[] {
    const elapsed = formatDuration(Date.now() - this.startedAt);
    const header =
      this.phase === 'done'
        ? this.headline
        : `:hourglass_flowing_sand: ${this.phase === 'thinking' ? 'Thinking' : 'Running'}… ${this.steps.length === 0 ? '' : `step ${this.steps.length} · `}${elapsed}`;
    const blocks: KnownBlock[] = [{ type: 'section', text: { type: 'mrkdwn', text: header } }];
    const body = this.compact ? '' : renderSteps(this.steps, this.phase !== 'done');
    if (body !== '') blocks.push({ type: 'section', text: { type: 'mrkdwn', text: body } });
    if (this.phase !== 'done') {
      blocks.push({
        type: 'actions',
        elements: [
          {
            type: 'button',
            action_id: STOP_ACTION_ID,
            value: this.turnId,
            style: 'danger',
            text: { type: 'plain_text', text: 'Stop' },
          },
        ],
      });
    }
    return blocks;
  }

  /** Slack's native "is working…" indicator; only some workspaces and app types allow it. */
  private async setAssistantStatus(status: string): Promise<void> {
    if (!this.assistantStatus) return;
    try {
      await this.thread.setStatus(status);
    } catch {
      this.assistantStatus = false; // not supported here: the edited status message is the indicator
    }
  }
}

/** A status message's last state when its turn ended without the bot that ran it: a headline, no Stop button. */
export function finishedStatus(headline: string): ThreadMessage {
  return { text: headline, blocks: [{ type: 'section', text: { type: 'mrkdwn', text: headline } }] };
}

/** The ts of the status message whose Stop button carries `turnId`, among the thread's messages after `afterTs`. */
export async function findStatusMessage(thread: SlackThread, turnId: string, afterTs: string): Promise<string | undefined> {
  const messages = await thread.messagesAfter(afterTs, 200);
  const isStopOfTurn = (block: KnownBlock) =>
    block.type === 'actions' && block.elements.some((element) => element.type === 'button' && element.action_id === STOP_ACTION_ID && element.value === turnId);
  return messages.find((message) => (message.blocks ?? []).some(isStopOfTurn))?.ts;
}
