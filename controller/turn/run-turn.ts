import { runTurn } from '../agent/agent-loop.js';
import { appendHistory, loadHistory, type HistoryMessage } from '../agent/history.js';
import type { BotDependencies, Mention } from './bot.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { buildNotebook } from './commands/notebook-export.js';
import { describeUploadsForModel, ingestSlackFiles } from '../slack/file-download.js';
import { runDownloadCommand, shareTurnFiles } from './share-turn-files.js';
import { toSlackMrkdwn } from '../slack/mrkdwn.js';
import { postLongText } from '../slack/long-text.js';
import { StatusMessage } from '../slack/status-message.js';
import { formatDuration } from '../text.js';
import { previewUploads } from './upload-preview.js';
import { isInternalPath, type Workspace } from '../workspace/workspace.js';
import { describeOutcome, threadCapReached, type Usage } from './turn-ending.js';

/** What a turn has done so far, so the catch-all knows what is left to save. */
interface TurnProgress {
  userMessage?: HistoryMessage;
  historySaved: boolean;
}

const USAGE_STATE = 'usage';
const TOOL_OUTPUT_CHARS = 12_000;

/** Runs one turn (or a command) for a mention, from status message to answer, files and history. */
export class TurnRunner {
  /** Final status edits still waiting for the edit interval; shutdown waits for them (settle). */
  private readonly pendingEdits = new Set<Promise<void>>();

  constructor(private readonly deps: BotDependencies) {}

  /** Resolves when every final status edit has been sent. */
  async settle(): Promise<void> {
    await Promise.all([...this.pendingEdits]);
  }

  /**
   * Lets a final status edit finish in the background: it may wait up to STATUS_INTERVAL_MS to keep
   * Slack's edit rate, and holding the thread's queue slot for that would cap throughput.
   */
  private track(edit: Promise<void>, log: Logger): void {
    const tracked = edit.catch((error: unknown) => log.warn('final status edit failed', { error: describeError(error) }));
    this.pendingEdits.add(tracked);
    void tracked.finally(() => this.pendingEdits.delete(tracked));
  }

  async run(mention: Mention, turnId: string, signal: AbortSignal, log: Logger): Promise<void> {
    const { client } = this.deps;
    const { channel, threadTs } = mention.key;
    const workspace = this.deps.store.open(mention.key);
    const status = new StatusMessage(client, channel, threadTs, turnId, this.deps.statusIntervalMs ?? 2000, log);
    const progress: TurnProgress = { historySaved: false };
    try {
      await status.start();
      await this.turn(mention, signal, log, workspace, status, progress);
    } catch (error) {
      // The one catch-all of a turn: whatever failed, the user's message stays in the history, the
      // status message stops saying "working", and the thread gets one clear line.
      log.error('turn failed', { error: describeError(error) });
      if (!progress.historySaved) {
        const userMessage = progress.userMessage ?? { role: 'user', content: mention.text, meta: { ts: mention.ts, user: mention.user } };
        await appendHistory(workspace, [userMessage, { role: 'assistant', content: '(This turn failed on the bot side before it finished.)' }]).catch(
          (saveError: unknown) => log.error('history not saved', { error: describeError(saveError) }),
        );
      }
      this.track(status.finish(':warning: Failed'), log);
      await postLongText(client, channel, threadTs, ':warning: Something went wrong on my side and this turn did not finish. Your message is saved; mention me again to retry.').catch(
        () => {},
      );
    }
  }

  private async turn(mention: Mention, signal: AbortSignal, log: Logger, workspace: Workspace, status: StatusMessage, progress: TurnProgress): Promise<void> {
    const { client, config } = this.deps;
    const { channel, threadTs } = mention.key;
    const startedAt = Date.now();
    const userText = await this.userContent(mention, workspace, signal, log);
    const userMessage: HistoryMessage = { role: 'user', content: userText, meta: { ts: mention.ts, user: mention.user } };
    progress.userMessage = userMessage;

    const [history, usageState] = await Promise.all([loadHistory(workspace), workspace.readState<Usage>(USAGE_STATE)]);
    const used = usageState?.value ?? { totalTokens: 0, sandboxMs: 0 };
    const { budgets, limits } = config;
    const capReached = threadCapReached(config, used);
    if (capReached !== undefined) {
      this.track(status.finish(':no_entry: This thread has used its budget.'), log);
      await postLongText(client, channel, threadTs, `:no_entry: This thread has reached its budget (${capReached}). Start a new thread to continue.`);
      await appendHistory(workspace, [userMessage, { role: 'assistant', content: '(Not answered: the thread budget was reached.)' }]);
      progress.historySaved = true;
      return;
    }

    const changed = new Set<string>();
    const figures: string[] = [];
    const outcome = await runTurn({
      openai: this.deps.openai,
      model: config.openai.model,
      sandbox: this.deps.sandbox,
      workspace,
      systemPrompt: this.deps.systemPrompt,
      history,
      userMessage,
      logger: log,
      signal,
      limits: {
        maxSteps: limits.maxStepsPerTurn,
        stepTimeoutSec: limits.stepTimeoutSec,
        contextTokenBudget: limits.contextTokenBudget,
        toolOutputChars: TOOL_OUTPUT_CHARS,
        maxTokens: minDefined(budgets.turnMaxTokens, remaining(budgets.threadMaxTokens, used.totalTokens)),
        maxSandboxMs: minDefined(
          budgets.turnMaxSandboxSec === undefined ? undefined : budgets.turnMaxSandboxSec * 1000,
          remaining(budgets.threadMaxSandboxSec === undefined ? undefined : budgets.threadMaxSandboxSec * 1000, used.sandboxMs),
        ),
      },
      onEvent: (event) => {
        if (event.type === 'model_call') status.thinking();
        else if (event.type === 'step_started') status.stepStarted(event.index, event.title, event.code, event.language);
        else {
          status.stepFinished(event.index, event.result);
          for (const file of event.result.files) if (file.change !== 'deleted' && !isInternalPath(file.path)) changed.add(file.path);
          figures.push(...event.result.figures);
        }
      },
    });

    const elapsed = formatDuration(Date.now() - startedAt);
    const stepsText = `${outcome.steps} step${outcome.steps === 1 ? '' : 's'}`;
    const ending = describeOutcome(outcome, config, mention.user, used);
    log.info('turn finished', { stopReason: outcome.stopReason, steps: outcome.steps, tokens: outcome.usage.totalTokens, sandboxMs: outcome.usage.sandboxMs });
    if (outcome.error !== undefined) log.error('turn ended by an error', { error: describeError(outcome.error) });

    const record: HistoryMessage[] = [...outcome.messages];
    if (outcome.stopReason !== 'answered') record.push({ role: 'assistant', content: `(${ending.historyNote})` });
    // History first: whatever happens to the Slack calls below, the turn is not lost.
    await appendHistory(workspace, record);
    progress.historySaved = true;
    await workspace.writeState(
      USAGE_STATE,
      { totalTokens: used.totalTokens + outcome.usage.totalTokens, sandboxMs: used.sandboxMs + outcome.usage.sandboxMs },
      usageState?.version ?? null,
    ).catch((error: unknown) => log.warn('usage not saved', { error: describeError(error) }));

    this.track(status.finish(`${ending.icon} ${ending.headline} · ${stepsText} · ${elapsed}`), log);
    const footer = config.budgets.usageFooter
      ? `\n\n_${outcome.usage.totalTokens.toLocaleString('en-US')} tokens · ${(outcome.usage.sandboxMs / 1000).toFixed(1)} s of sandbox_`
      : '';
    if (outcome.answer.trim() !== '') {
      await postLongText(client, channel, threadTs, toSlackMrkdwn(outcome.answer) + footer, { fullMarkdown: outcome.answer });
    }
    if (ending.message !== undefined) await postLongText(client, channel, threadTs, ending.message + (outcome.answer.trim() === '' ? footer : ''));
    if (changed.size > 0 || figures.length > 0) {
      await shareTurnFiles({
        client,
        channel,
        threadTs,
        workspace,
        paths: [...changed],
        figures,
        max: limits.maxSharedFilesPerTurn,
        logger: log,
      });
    }
  }

  async download(mention: Mention, log: Logger): Promise<void> {
    const { client, store } = this.deps;
    await runDownloadCommand({ client, channel: mention.key.channel, threadTs: mention.key.threadTs, workspace: store.open(mention.key), logger: log });
  }

  async notebook(mention: Mention, log: Logger): Promise<void> {
    const { client, store } = this.deps;
    const { channel, threadTs } = mention.key;
    const workspace = store.open(mention.key);
    const history = await loadHistory(workspace);
    if (!history.some((message) => message.role === 'tool')) {
      await client.chat.postMessage({ channel, thread_ts: threadTs, text: 'There is no code in this thread yet, so there is no notebook to export.' });
      return;
    }
    const notebook = await buildNotebook(history, workspace, { title: `Slack thread ${threadTs}` });
    await client.files.uploadV2({
      channel_id: channel,
      thread_ts: threadTs,
      filename: 'thread.ipynb',
      title: 'thread.ipynb',
      file: notebook,
      initial_comment: 'Here is the work of this thread as a Jupyter notebook.',
    });
    log.info('notebook shared', { bytes: notebook.length });
  }

  /** The user's message for the model: their text, where their files were saved, and a preview of tables. */
  private async userContent(mention: Mention, workspace: Workspace, signal: AbortSignal, log: Logger): Promise<string> {
    const { client, config } = this.deps;
    const { channel, threadTs } = mention.key;
    const ingest = await ingestSlackFiles({
      client,
      botToken: config.slack.botToken,
      workspace,
      channel,
      messageTs: mention.ts,
      threadTs,
      files: mention.files,
      eventMayHaveFiles: mention.text === '',
      maxUploadBytes: config.limits.maxUploadMb * 1024 * 1024,
      logger: log,
    });
    if (ingest.problems.length > 0) {
      await postLongText(client, channel, threadTs, ingest.problems.map((problem) => `:warning: ${problem}`).join('\n'));
    }
    const parts: string[] = [];
    if (mention.text !== '') parts.push(mention.text);
    const uploads = describeUploadsForModel(ingest.saved);
    if (uploads !== '') {
      parts.push(uploads);
      const preview = await previewUploads({
        sandbox: this.deps.sandbox,
        workspace,
        paths: ingest.saved.map((file) => file.path),
        timeoutSec: Math.min(60, config.limits.stepTimeoutSec),
        logger: log,
        signal,
      });
      if (preview !== '') parts.push(preview);
    }
    if (mention.text === '') {
      parts.push(ingest.saved.length > 0 ? 'Please take a first look at the file(s) and tell me what they contain.' : '(The message had no text.)');
    }
    return parts.join('\n\n');
  }
}

function remaining(cap: number | undefined, used: number): number | undefined {
  return cap === undefined ? undefined : Math.max(0, cap - used);
}

function minDefined(...values: (number | undefined)[]): number | undefined {
  const defined = values.filter((value): value is number => value !== undefined);
  return defined.length === 0 ? undefined : Math.min(...defined);
}
