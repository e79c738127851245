import { runAgentLoop, type TurnOutcome } from '../agent/agent-loop.js';
import type { ChatModel } from '../agent/chat-model.js';
import { appendHistory, loadHistory, type HistoryMessage } from '../agent/history.js';
import type { Config } from '../config.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Sandbox, SandboxSession } from '../sandbox/sandbox.js';
import type { Mention } from '../slack/mention.js';
import type { SlackThread } from '../slack/slack-thread.js';
import type { StreamPacer } from '../slack/stream-pacer.js';
import { countOf, formatDuration } from '../text.js';
import type { Workspace } from '../workspace/workspace.js';
import { loadThreadUsage, saveThreadUsage, threadCapReached, turnLimits, usageFooter, type ThreadUsage } from './budgets.js';
import { shareTurnFiles, TurnFiles } from './share-turn-files.js';
import type { StatusEdits } from './status-edits.js';
import { postStepTables, showingTables } from './step-tables.js';
import { StreamView } from './stream-view.js';
import { describeEnding, FAILED_TURN, threadBudgetEnding, TurnFailedError } from './turn-ending.js';
import { setSessionStatus, StatusView, type TurnView, type ViewContext } from './turn-view.js';
import { buildUserMessage } from './user-message.js';

/**
 * One model turn for a mention, from the status message to the answer, the history and the files:
 * user's message -> budget check -> agent loop (agent/agent-loop.ts) -> ending (turn-ending.ts).
 * Whatever fails, the user's message stays in the history and the status stops saying "working";
 * the failure is then thrown as a TurnFailedError for the Bot's one catch-all to log and tell.
 */

export interface TurnDependencies {
  config: Config;
  model: ChatModel;
  sandbox: Sandbox;
  systemPrompt: string;
  statusEdits: StatusEdits;
  /** Slack's rate tiers for streamed replies, shared by every turn. */
  pacer: StreamPacer;
}

export interface TurnContext {
  mention: Mention;
  thread: SlackThread;
  workspace: Workspace;
  /** The id the status message's Stop button carries. */
  turnId: string;
  /** Aborted by Stop or at shutdown. */
  signal: AbortSignal;
  log: Logger;
  /** Told the status message's ts once it is posted (the thread's turn journal records it). */
  onStatusPosted?: (ts: string) => void;
}

/** What a turn has done so far, so a failure knows what is left to save. */
interface TurnProgress {
  userMessage?: HistoryMessage;
  historySaved: boolean;
}

export async function runTurn(deps: TurnDependencies, turn: TurnContext): Promise<void> {
  const progress: TurnProgress = { historySaved: false };
  let session: SandboxSession | undefined;
  let view: TurnView | undefined;
  // Slack's own Stop control while the turn runs; the session goes back to `active` whatever happens.
  const nativeStop = await setSessionStatus(turn.thread, 'processing', turn.log, turn.mention.text);
  try {
    // The session first: a backend may start warming up while the status message is posted.
    session = deps.sandbox.session(turn.workspace);
    view = await openTurnView(deps, turn, nativeStop);
    await answer(deps, turn, { session, view, progress });
  } catch (error) {
    if (!progress.historySaved) {
      const userMessage = progress.userMessage ?? { role: 'user', content: turn.mention.text, meta: { ts: turn.mention.ts, user: turn.mention.user } };
      await appendHistory(turn.workspace, [userMessage, historyNote(FAILED_TURN.historyNote)]).catch((saveError: unknown) =>
        turn.log.error('history not saved', { error: describeError(saveError) }),
      );
    }
    view?.fail(FAILED_TURN.headline);
    throw new TurnFailedError(error);
  } finally {
    await session?.release().catch((error: unknown) => turn.log.warn('sandbox session not released', { error: describeError(error) }));
    await setSessionStatus(turn.thread, 'active', turn.log);
  }
}

/** Streamed when SLACK_STREAMING=auto (falling back by itself), else the status message and replies (turn-view.ts). */
async function openTurnView(deps: TurnDependencies, turn: TurnContext, nativeStop: boolean): Promise<TurnView> {
  const context: ViewContext = { ...deps, ...turn };
  const view = deps.config.slack.streaming === 'auto' ? new StreamView(context, { nativeStop }) : new StatusView(context);
  await view.start();
  return view;
}

interface TurnParts {
  session: SandboxSession;
  view: TurnView;
  progress: TurnProgress;
}

async function answer(deps: TurnDependencies, turn: TurnContext, parts: TurnParts): Promise<void> {
  const startedAt = Date.now();
  const { config } = deps;
  const userMessage = await buildUserMessage({ ...turn, session: parts.session, config });
  parts.progress.userMessage = userMessage;

  const [history, usage] = await Promise.all([loadHistory(turn.workspace), loadThreadUsage(turn.workspace)]);
  const capReached = threadCapReached(config.budgets, usage.used);
  if (capReached !== undefined) {
    const ending = threadBudgetEnding(capReached);
    await parts.view.finish({ headline: ending.headline, answer: '', endingMessage: ending.message, footer: '' });
    await appendHistory(turn.workspace, [userMessage, historyNote(ending.historyNote)]);
    parts.progress.historySaved = true;
    return;
  }

  const files = new TurnFiles();
  const outcome = await runAgentLoop({
    model: deps.model,
    session: showingTables(parts.session, (result, step) => postStepTables({ ...turn, result, step, logger: turn.log })),
    systemPrompt: deps.systemPrompt,
    history,
    userMessage,
    limits: turnLimits(config, usage.used),
    signal: turn.signal,
    streamText: parts.view.streamsText,
    onEvent: (event) => {
      parts.view.show(event);
      if (event.type === 'step_finished') files.collect(event.result);
    },
  });
  const elapsed = formatDuration(Date.now() - startedAt);
  await finishTurn(deps, turn, parts, { outcome, usage, files, elapsed });
}

/** History first (whatever happens to the Slack calls after, the turn is not lost), then the thread. */
async function finishTurn(
  deps: TurnDependencies,
  turn: TurnContext,
  parts: TurnParts,
  done: { outcome: TurnOutcome; usage: ThreadUsage; files: TurnFiles; elapsed: string },
): Promise<void> {
  const { config } = deps;
  const { outcome, usage, files } = done;
  const { log, thread } = turn;
  const ending = describeEnding(outcome, config, turn.mention.user, usage.used, turn.signal);
  log.info('turn finished', { stopReason: outcome.stopReason, steps: outcome.steps, tokens: outcome.usage.totalTokens, sandboxMs: outcome.usage.sandboxMs });
  if (outcome.error !== undefined) log.error('turn ended by an error', { error: describeError(outcome.error) });

  const record: HistoryMessage[] = [...outcome.messages];
  if (outcome.stopReason !== 'answered') record.push(historyNote(ending.historyNote));
  await appendHistory(turn.workspace, record);
  parts.progress.historySaved = true;
  await saveThreadUsage(turn.workspace, usage, outcome.usage, log);

  await parts.view.finish({
    headline: `${ending.icon} ${ending.headline} · ${countOf(outcome.steps, 'step')} · ${done.elapsed}`,
    answer: outcome.answer,
    ...(ending.message === undefined ? {} : { endingMessage: ending.message }),
    footer: usageFooter(config.budgets, outcome.usage),
  });
  if (!files.isEmpty) {
    await shareTurnFiles({ thread, workspace: turn.workspace, paths: [...files.paths], figures: files.figures, max: config.limits.maxSharedFilesPerTurn, logger: log });
  }
}

/** A note for later turns, kept in the history as the assistant's words in parentheses. */
function historyNote(note: string): HistoryMessage {
  return { role: 'assistant', content: `(${note})` };
}
