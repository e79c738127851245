/**
 * The client side of figure 1, in its own process so that neither the fakes (which serve the bot's
 * Slack and model calls in the bench process) nor the bot delay the clock that measures the acks.
 * Forked with IPC: receives `{ id, url, signingSecret, events }`, posts every event at once as a
 * signed Events API request, and answers `{ id, results: [{ status, elapsedMs }] }`.
 */
import { postEvent } from '../test/helpers/slack-events.js';

export interface BurstRequest {
  id: number;
  url: string;
  signingSecret: string;
  events: Record<string, unknown>[];
}

export interface BurstResult {
  id: number;
  results: Array<{ status: number; elapsedMs: number }>;
}

process.on('message', (message: BurstRequest) => {
  void Promise.all(message.events.map((event) => postEvent(message.url, message.signingSecret, event)))
    .then((posted) => posted.map(({ status, elapsedMs }) => ({ status, elapsedMs })))
    .catch(() => message.events.map(() => ({ status: 0, elapsedMs: Number.NaN })))
    .then((results) => process.send?.({ id: message.id, results } satisfies BurstResult));
});
process.on('disconnect', () => process.exit(0));
