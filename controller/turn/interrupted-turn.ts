import { appendHistory, loadHistory, type HistoryMessage } from '../agent/history.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Mention } from '../slack/mention.js';
import type { SlackThread } from '../slack/slack-thread.js';
import { findStatusMessage, finishedStatus } from '../slack/status-message.js';
import type { TurnJournal } from '../workspace/held-lease.js';
import type { Workspace } from '../workspace/workspace.js';
import { INTERRUPTED_TURN } from './turn-ending.js';
import { setSessionStatus } from './turn-view.js';

/**
 * No turn ends silently (issue 15). A turn whose instance went away before its end (killed, crashed, or shut down
 * without time to finish it) stays in its thread's journal (workspace/thread-lease.ts); the instance that takes
 * the thread's lease over tells it here: the history first (the user's message if the turn never saved it, and a
 * note the model reads next time), then the status message stops saying it is working, then one sentence in the
 * thread.
 */
export async function tellInterrupted(
  parts: { thread: SlackThread; workspace: Workspace; log: Logger; recordInHistory: boolean },
  journal: TurnJournal<Mention>,
): Promise<void> {
  const { thread, workspace, log } = parts;
  const mention = journal.entry;
  if (parts.recordInHistory) {
    const history = await loadHistory(workspace);
    const saved = history.some((message) => message.role === 'user' && message.meta?.ts === mention.ts);
    const record: HistoryMessage[] = saved ? [] : [{ role: 'user', content: mention.text === '' ? '(The message had no text.)' : mention.text, meta: { ts: mention.ts, user: mention.user } }];
    record.push({ role: 'assistant', content: `(${INTERRUPTED_TURN.historyNote})` });
    await appendHistory(workspace, record);
  }
  // The journal has the status message once a renewal recorded it; before that, its Stop button names the turn.
  const statusTs = journal.statusTs ?? (await findStatusMessage(thread, journal.id, mention.ts).catch((error: unknown) => {
    log.warn('status message not found', { error: describeError(error) });
    return undefined;
  }));
  if (statusTs !== undefined) {
    await thread.update(statusTs, finishedStatus(INTERRUPTED_TURN.headline)).catch((error: unknown) => log.warn('status update failed', { error: describeError(error) }));
  }
  await thread.setStatus('').catch(() => {});
  // Slack's own Stop control stays while the thread's agent session says `processing`.
  await setSessionStatus(thread, 'active', log);
  await thread.post({ text: INTERRUPTED_TURN.message });
}
