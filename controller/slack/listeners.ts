import type { App } from '@slack/bolt';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ThreadKey } from '../workspace/thread-key.js';
import { stripBotMention, type Mention, type SlackFileRef } from './mention.js';
import { STOP_ACTION_ID } from './status-message.js';

/**
 * Transport only (Bolt's own rule): Slack events become Mentions for the handler (the Bot, turn/bot.ts), and
 * Stop clicks become handler.stopTurn(). Bolt acknowledges each event before any listener work; the
 * listener starts the turn and returns at once. What a mention leads to is decided by the handler.
 * Every event that reaches a listener gets one debug line, `event routed`: accepted, or ignored with the reason.
 */

/** What the listeners hand Slack's events to (the Bot). */
export interface MentionHandler {
  /** Handles one mention; tells the thread about any failure itself and never rejects. */
  handleMention(mention: Mention): Promise<void>;
  /** A Stop click by `user`: undefined when the turn was stopped, else a sentence for the clicker. */
  stopTurn(turnId: string, user: string): Promise<string | undefined>;
  /** Slack's own Stop control in a thread (agent_session_stopped), by `user`: like stopTurn. */
  stopThreadTurn(key: ThreadKey, user: string): Promise<string | undefined>;
  /** True when the bot already has a conversation in this thread (replies without a mention continue it). */
  knowsThread(key: ThreadKey): Promise<boolean>;
}

interface MessageLikeEvent {
  type: string;
  subtype?: string;
  bot_id?: string;
  user?: string;
  text?: string;
  ts: string;
  thread_ts?: string;
  channel: string;
  team?: string;
  files?: SlackFileRef[];
  channel_type?: string;
  hidden?: boolean;
  /** The message an edit or a reply event is about. */
  message?: unknown;
}

interface EventContext {
  body: { event_id?: string; team_id?: string };
  botUserId: string | undefined;
  teamId: string | undefined;
}

export function registerListeners(app: App, handler: MentionHandler, options: { replyWithoutMention: boolean; logger: Logger }): void {
  const { logger } = options;
  const accept = mentionFilter();

  // Bolt has written the 200 already; starting the turn on the next turn of the event loop lets that
  // response (and other requests' acks) go out before any of the turn's work runs.
  const route = (outcome: Mention | Ignored, body: EventContext['body']) => {
    if ('ignored' in outcome) {
      logger.debug('event routed', { outcome: 'ignored', reason: outcome.ignored, eventId: body.event_id });
      return;
    }
    logger.debug('event routed', { outcome: 'accepted', eventId: body.event_id, ts: outcome.ts });
    setImmediate(() => void handler.handleMention(outcome));
  };

  app.event('app_mention', async ({ event, body, context }) => {
    route(accept(event as unknown as MessageLikeEvent, { body, botUserId: context.botUserId, teamId: context.teamId }), body);
  });

  app.event('message', async ({ event, body, context }) => {
    const message = event as unknown as MessageLikeEvent;
    const eventContext = { body, botUserId: context.botUserId, teamId: context.teamId };
    // In a direct message everything is addressed to the bot: no mention needed.
    if (message.channel_type === 'im') return route(accept(message, eventContext), body);
    // Replies in a thread the bot is already in continue the conversation without a mention (setting).
    if (!options.replyWithoutMention) return route({ ignored: 'not addressed to the bot' }, body);
    if (message.thread_ts === undefined || message.thread_ts === message.ts) return route({ ignored: 'not a reply in a thread' }, body);
    if (context.botUserId !== undefined && (message.text ?? '').includes(`<@${context.botUserId}`)) return route({ ignored: 'a mention: app_mention handles it' }, body);
    const mention = accept(message, eventContext, false);
    if ('ignored' in mention || (await handler.knowsThread(mention.key))) return route(mention, body);
    route({ ignored: 'a thread the bot is not in' }, body);
  });

  app.action(STOP_ACTION_ID, async ({ ack, body, action, client }) => {
    await ack();
    const turnId = 'value' in action && typeof action.value === 'string' ? action.value : '';
    const reply = await handler.stopTurn(turnId, body.user.id);
    const channel = body.channel?.id;
    if (reply === undefined || channel === undefined) return;
    const thread = 'message' in body ? (body.message?.thread_ts as string | undefined) : undefined;
    await client.chat.postEphemeral({ channel, user: body.user.id, thread_ts: thread, text: reply });
  });

  // Slack's own Stop control of the thread's agent session (https://docs.slack.dev/reference/events/agent_session_stopped):
  // the event names the thread and who pressed it; the team is on the envelope. Slack has already stopped the
  // app's streams in that thread and leaves the session's status to the app.
  app.event('agent_session_stopped', async ({ event, body, context, client }) => {
    const key = { team: body.team_id ?? context.teamId ?? 'T0', channel: event.channel, threadTs: event.thread_ts };
    const reply = await handler.stopThreadTurn(key, event.user);
    if (reply === undefined) return;
    await client.chat.postEphemeral({ channel: event.channel, user: event.user, thread_ts: event.thread_ts, text: reply });
  });

  app.error(async (error) => {
    logger.error('slack app error', { error: describeError(error) });
  });
}

/** Why an event starts nothing. */
interface Ignored {
  ignored: string;
}

/**
 * Turns a message event into a Mention, or the reason it must start nothing (bots, edits, duplicates). The
 * de-duplication here is this process's memory, in front of the store's (workspace/deliveries.ts, done by the
 * handler): a redelivery this instance has seen costs no store round trip.
 */
function mentionFilter(): (event: MessageLikeEvent, context: EventContext, explicit?: boolean) => Mention | Ignored {
  const recent = new RecentKeys();
  return (event, { body, botUserId, teamId }, explicit = true) => {
    // Messages from bots (ourselves included) never start anything; neither do events about another message
    // (a thread parent's new reply_count arrives as a hidden message_changed, or message_replied without subtype).
    if (event.bot_id !== undefined || event.user === undefined || event.user === botUserId) return { ignored: 'from a bot' };
    if (event.hidden === true || event.message !== undefined) return { ignored: 'about another message' };
    if (event.subtype !== undefined && event.subtype !== 'file_share' && event.subtype !== 'thread_broadcast') return { ignored: `subtype ${event.subtype}` };
    // One message can arrive as app_mention and as message, and a delivery can be retried.
    if (body.event_id !== undefined && !recent.firstTime(`event:${body.event_id}`)) return { ignored: 'event_id seen' };
    if (!recent.firstTime(`message:${event.channel}:${event.ts}`)) return { ignored: 'message seen' };
    return {
      key: { team: body.team_id ?? event.team ?? teamId ?? 'T0', channel: event.channel, threadTs: event.thread_ts ?? event.ts },
      user: event.user,
      text: stripBotMention(event.text ?? '', botUserId),
      ts: event.ts,
      files: event.files ?? [],
      explicit,
      ...(body.event_id === undefined ? {} : { eventId: body.event_id }),
      ...(botUserId === undefined ? {} : { botUserId }),
    };
  };
}

/** Remembers recently seen keys so a retried or duplicated delivery starts no second turn (in this process). */
class RecentKeys {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly ttlMs = 30 * 60_000,
    private readonly maxKeys = 50_000,
  ) {}

  /** True the first time a key is seen (within the TTL). */
  firstTime(key: string, now = Date.now()): boolean {
    const expiry = this.seen.get(key);
    if (expiry !== undefined && expiry > now) return false;
    this.seen.set(key, now + this.ttlMs);
    if (this.seen.size > this.maxKeys) {
      for (const [oldKey, oldExpiry] of this.seen) {
        if (oldExpiry <= now || this.seen.size > this.maxKeys) this.seen.delete(oldKey);
        else break;
      }
    }
    return true;
  }
}
