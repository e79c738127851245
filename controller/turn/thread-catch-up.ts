import { HISTORY_STATE, type HistoryMessage } from '../agent/history.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Mention, SlackFileRef } from '../slack/mention.js';
import type { SlackThread } from '../slack/slack-thread.js';
import { compareTs, type ThreadReply } from '../slack/thread-replies.js';
import { StateConflictError, type Workspace } from '../workspace/workspace.js';

/**
 * Thread catch-up (issue 16): before each turn, what happened in the thread since the bot's last turn, read back
 * from Slack (conversations.replies, slack/thread-replies.ts) from the last message the bot has seen, which is
 * kept in the thread's controller state. Other people's messages become context for the model, attributed to
 * whoever wrote them (at most MAX_MESSAGES and MAX_CONTEXT_CHARS, the oldest dropped first); files they shared
 * without mentioning the bot are fetched like attachments; and the mention's own message shows the files Slack
 * left out of the event.
 */

const CATCH_UP_STATE = 'catch-up';
const MAX_MESSAGES = 20;
const MAX_MESSAGE_CHARS = 1_000;
const MAX_CONTEXT_CHARS = 4_000;
const MAX_SHARED_FILES = 20;

export interface CatchUp {
  /** Files of the mention's own message as Slack has them; undefined when the message was not read back. */
  mentionFiles?: SlackFileRef[];
  /** Files other people shared in the thread since the last turn (at most MAX_SHARED_FILES), with who shared them. */
  shared: Array<{ user: string; file: SlackFileRef }>;
  /** Files shared since but not fetched (over MAX_SHARED_FILES). */
  sharedLeftOut: number;
  /** Other people's messages since the last turn, for the model ('' when none). */
  context: string;
}

/** Reads the thread since the bot's last turn; a failure to read it only loses the context, never the turn. */
export async function catchUp(options: { thread: SlackThread; workspace: Workspace; mention: Mention; log: Logger }): Promise<CatchUp> {
  const { thread, workspace, mention, log } = options;
  let replies: ThreadReply[];
  try {
    const after = await lastSeen(workspace);
    replies = await thread.readReplies({ ...(after === undefined ? {} : { after }), upTo: mention.ts });
  } catch (error) {
    log.warn('thread catch-up failed', { error: describeError(error) });
    return { shared: [], sharedLeftOut: 0, context: '' };
  }
  const own = replies.find((reply) => reply.ts === mention.ts);
  const others = replies.filter((reply) => reply.ts !== mention.ts && isPersonSpeaking(reply, mention.botUserId));
  const shared = others.flatMap((reply) => reply.files.map((file) => ({ user: reply.user!, file })));
  log.info('thread caught up', { messages: others.length, sharedFiles: shared.length });
  return {
    ...(own === undefined ? {} : { mentionFiles: own.files }),
    shared: shared.slice(0, MAX_SHARED_FILES),
    sharedLeftOut: Math.max(0, shared.length - MAX_SHARED_FILES),
    context: contextForModel(others),
  };
}

/** The mention is the last message the bot has seen in the thread; a newer mark (another instance) is kept. */
export async function rememberSeen(workspace: Workspace, ts: string, log: Logger): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const current = await workspace.readState<{ lastSeenTs: string }>(CATCH_UP_STATE);
    if (current !== undefined && compareTs(current.value.lastSeenTs, ts) >= 0) return;
    try {
      await workspace.writeState(CATCH_UP_STATE, { lastSeenTs: ts }, current?.version ?? null);
      return;
    } catch (error) {
      if (!(error instanceof StateConflictError)) {
        log.warn('catch-up mark not saved', { error: describeError(error) });
        return;
      }
    }
  }
}

/** The last message seen: the catch-up mark, else (a thread from before catch-up) the last message of the history. */
async function lastSeen(workspace: Workspace): Promise<string | undefined> {
  const mark = await workspace.readState<{ lastSeenTs: string }>(CATCH_UP_STATE);
  if (mark !== undefined) return mark.value.lastSeenTs;
  const history = (await workspace.readState<HistoryMessage[]>(HISTORY_STATE))?.value ?? [];
  return history.findLast((message) => message.role === 'user' && message.meta?.ts !== undefined)?.meta?.ts;
}

/** A person's message that no event of ours handles: not a bot's, not a mention of the bot (those are turns or commands). */
function isPersonSpeaking(reply: ThreadReply, botUserId: string | undefined): boolean {
  if (reply.botId !== undefined || reply.user === undefined || reply.user === botUserId) return false;
  return botUserId === undefined || !reply.text.includes(`<@${botUserId}`);
}

function contextForModel(messages: ThreadReply[]): string {
  const lines = messages
    .filter((message) => message.text.trim() !== '' || message.files.length > 0)
    .map((message) => `<@${message.user}>: ${describeMessage(message)}`);
  const kept: string[] = [];
  let characters = 0;
  for (const line of lines.slice(-MAX_MESSAGES).reverse()) {
    if (characters + line.length > MAX_CONTEXT_CHARS) break;
    kept.unshift(line);
    characters += line.length;
  }
  if (kept.length === 0) return '';
  const left = lines.length - kept.length;
  const header = 'Others wrote in this thread since my last reply (context, not addressed to me):';
  return [header, ...(left > 0 ? [`(${left} earlier messages left out)`] : []), ...kept].join('\n');
}

function describeMessage(message: ThreadReply): string {
  const text = message.text.trim().replace(/\s*\n\s*/g, ' / ');
  const cut = text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS - 1)}…` : text;
  const files = message.files.map((file) => file.name ?? file.title ?? 'a file').join(', ');
  return [cut, files === '' ? '' : `[shared ${files}]`].filter((part) => part !== '').join(' ');
}
