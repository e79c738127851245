import { randomUUID } from 'node:crypto';
import { recordName, type RecordStore } from './records.js';

/**
 * De-duplication of Slack's deliveries across instances. Slack delivers an event at least once: it retries a
 * delivery it thinks failed (`X-Slack-Retry-Num`), possibly to another instance, and one message can arrive as
 * two events (`app_mention` and `message` in a direct message). Each delivery creates two records if absent, one
 * per key, as the in-memory de-duplication in front of this (slack/listeners.ts) keys them:
 *   coordination/messages/<team>/<channel>/<ts>   the message (one message, one turn)
 *   coordination/events/<event_id>                the event (a redelivery whose payload differs)
 * Both creates go out at once (one round trip). Records expire after a day (the retention command and the
 * bucket's lifecycle rule remove them): Slack retries for minutes, not days.
 */

export interface Delivery {
  /** The Events API envelope's event_id (absent for events built in process). */
  eventId?: string;
  team: string;
  channel: string;
  ts: string;
}

/** How long a de-duplication record is kept (retention removes older ones). */
export const DELIVERY_RECORD_TTL_MS = 24 * 60 * 60 * 1000;
export const DELIVERY_PREFIXES = ['messages/', 'events/'] as const;

interface DeliveryRecord {
  message: string;
  instance: string;
  atMs: number;
  writeId: string;
}

export class DeliveryRecords {
  constructor(
    private readonly records: RecordStore,
    private readonly instance: string,
  ) {}

  /** True for the one delivery of a message (and of an event_id) that should be handled; false for a repeat. */
  async firstDelivery(delivery: Delivery): Promise<boolean> {
    const message = recordName('messages', delivery.team, delivery.channel, delivery.ts);
    const event = delivery.eventId === undefined ? undefined : recordName('events', delivery.eventId);
    const value: DeliveryRecord = { message, instance: this.instance, atMs: Date.now(), writeId: randomUUID() };
    const [ownMessage, ownEvent] = await Promise.all([this.records.create(message, value), event === undefined ? 'none' : this.records.create(event, value)]);
    if (ownMessage === undefined) return false;
    if (ownEvent !== undefined) return true;
    // The event_id is known already. Of the same message (two instances racing on one delivery, each creating one
    // of the two records): the message's record decides, and it is ours. Of another message: a redelivery whose
    // payload changed, handled already.
    const seen = await this.records.read<DeliveryRecord>(event!);
    return seen?.value.message === message;
  }
}
