import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { StateConflictError, type Workspace } from '../workspace/workspace.js';

/**
 * A thread's conversation as the model sees it (OpenAI chat messages), plus `meta` that only the
 * controller reads (notebook export, budgets). `meta` is stripped before the model is called.
 */
export type HistoryMessage = ChatCompletionMessageParam & { meta?: MessageMeta };

export interface MessageMeta {
  /** Slack ts of the user's message or of the bot's answer. */
  ts?: string;
  user?: string;
  /** For tool messages: what the step printed and made, for the notebook export. */
  step?: {
    code: string;
    stdout: string;
    stderr: string;
    error: { name: string; value: string; traceback: string } | null;
    figures: string[];
    durationMs: number;
    /** The compact text of the tables the step showed (issue 16), for the notebook's outputs. */
    tables?: string[];
  };
}

export const HISTORY_STATE = 'messages';

export async function loadHistory(workspace: Workspace): Promise<HistoryMessage[]> {
  return (await workspace.readState<HistoryMessage[]>(HISTORY_STATE))?.value ?? [];
}

/**
 * Appends one turn's messages to the stored history. The write is conditional on the version read
 * just before; if another controller instance wrote in between, re-read and append again, so no
 * one's update is lost. Gives up (throws) after a few rounds rather than overwriting.
 */
export async function appendHistory(workspace: Workspace, messages: HistoryMessage[], attempts = 5): Promise<void> {
  if (messages.length === 0) return;
  for (let attempt = 1; ; attempt++) {
    const current = await workspace.readState<HistoryMessage[]>(HISTORY_STATE);
    try {
      await workspace.writeState(HISTORY_STATE, [...(current?.value ?? []), ...messages], current?.version ?? null);
      return;
    } catch (error) {
      if (!(error instanceof StateConflictError) || attempt >= attempts) throw error;
    }
  }
}

/** Rough token estimate (4 characters a token): enough to keep a request inside a budget. */
export function estimateTokens(messages: readonly ChatCompletionMessageParam[]): number {
  let characters = 0;
  for (const message of messages) characters += JSON.stringify(message).length;
  return Math.ceil(characters / 4);
}

const TRIMMED_KEEP_CHARS = 300;

/**
 * The messages to send to the model within `budgetTokens`: `meta` stripped; the output of old tool
 * calls shortened first (oldest first, the current turn's last); then whole old turns dropped
 * (a turn starts at a user message, so tool calls and their results always stay paired).
 */
export function toModelMessages(history: readonly HistoryMessage[], budgetTokens: number): ChatCompletionMessageParam[] {
  const messages: ChatCompletionMessageParam[] = history.map(({ meta: _meta, ...message }) => ({ ...message }) as ChatCompletionMessageParam);
  // Sizes are measured once; every decision below works on these numbers (a thread can hold
  // thousands of messages and this runs before every model call).
  const sizes = messages.map((message) => JSON.stringify(message).length);
  const budgetChars = budgetTokens * 4;
  let total = sizes.reduce((sum, size) => sum + size, 0);
  if (total <= budgetChars) return messages;

  for (let index = 0; index < messages.length && total > budgetChars; index++) {
    const message = messages[index]!;
    if (message.role !== 'tool' || typeof message.content !== 'string' || message.content.length <= TRIMMED_KEEP_CHARS * 2) continue;
    const cut = message.content.length - TRIMMED_KEEP_CHARS;
    messages[index] = {
      ...message,
      content: `${message.content.slice(0, TRIMMED_KEEP_CHARS)}\n[… ${cut} characters of this older output were trimmed to keep the conversation within the context budget …]`,
    };
    const size = JSON.stringify(messages[index]).length;
    total -= sizes[index]! - size;
    sizes[index] = size;
  }
  if (total <= budgetChars) return messages;

  // Drop whole turns from the oldest, never the current one: one splice at the first turn to keep.
  const firstUser = messages.findIndex((message) => message.role === 'user');
  const lastUser = messages.findLastIndex((message) => message.role === 'user');
  if (firstUser < 0) return messages;
  let keepFrom = firstUser;
  let turnSize = 0;
  for (let index = firstUser; index < lastUser && total > budgetChars; index++) {
    turnSize += sizes[index]!;
    if (messages[index + 1]?.role === 'user') {
      // A whole turn ends here: drop it.
      total -= turnSize;
      turnSize = 0;
      keepFrom = index + 1;
    }
  }
  messages.splice(firstUser, keepFrom - firstUser);
  return messages;
}
