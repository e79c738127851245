import type { ThreadKey } from '../workspace/thread-key.js';

/** A mention (or a thread reply) as the bot sees it, whatever the transport. */
export interface Mention {
  key: ThreadKey;
  user: string;
  /** The text with the bot's own mention removed. */
  text: string;
  /** ts of the message itself (the thread is key.threadTs). */
  ts: string;
  files: SlackFileRef[];
  /** False for a thread reply without a mention (REPLY_WITHOUT_MENTION): such replies never get a refusal line. */
  explicit?: boolean;
  /** The Events API event_id that carried it: the key of its de-duplication across instances. */
  eventId?: string;
  /** The bot's own user id, when the transport knows it (the thread catch-up leaves out messages that mention it). */
  botUserId?: string;
}

/** The parts of a Slack file object that we use. */
export interface SlackFileRef {
  id: string;
  name?: string;
  title?: string;
  size?: number;
  mimetype?: string;
  mode?: string;
  url_private_download?: string;
  url_private?: string;
}

/** The message text without mentions of the bot (`<@U123>` or `<@U123|name>`). */
export function stripBotMention(text: string, botUserId: string | undefined): string {
  if (botUserId === undefined) return text.trim();
  return text.replace(new RegExp(`<@${botUserId}(\\|[^>]*)?>`, 'g'), '').trim();
}
