/**
 * De-duplication of Slack's deliveries across instances (controller/workspace/deliveries.ts), on both backends:
 * both keys (event_id, channel + ts), two instances racing on one delivery, and lost answers on GCS.
 */
import { describe, expect, test } from 'vitest';
import { DeliveryRecords } from '../controller/workspace/deliveries.js';
import { recordBackends } from './helpers/record-backends.js';

const { gcs, both: backends, onGcs } = recordBackends('deliveries');

describe.each(backends)('delivery records (%s)', (_name, makeRecords) => {
  test('the first delivery is handled; a retry, the same message under another event, and a changed redelivery are not', async () => {
    const records = await makeRecords();
    const [a, b] = [new DeliveryRecords(records, 'a'), new DeliveryRecords(records, 'b')];
    const delivery = { eventId: 'EvFIRST', team: 'T1', channel: 'C1', ts: '1700000000.000100' };
    expect(await a.firstDelivery(delivery)).toBe(true);
    expect(await b.firstDelivery(delivery), "Slack's retry, on another instance").toBe(false);
    expect(await b.firstDelivery({ ...delivery, eventId: 'EvOTHER' }), 'app_mention and message of one message').toBe(false);
    expect(await b.firstDelivery({ ...delivery, ts: '1700000000.000200' }), 'the event_id again, with another payload').toBe(false);
    expect(await b.firstDelivery({ team: 'T1', channel: 'C1', ts: '1700000000.000300' }), 'no event_id: the message decides').toBe(true);
    expect((await records.list('events/')).map((entry) => entry.name)).toStrictEqual(['events/EvFIRST', 'events/EvOTHER']);
  });

  test('two instances handed one delivery at once: exactly one handles it', async () => {
    const records = await makeRecords();
    const [a, b] = [new DeliveryRecords(records, 'a'), new DeliveryRecords(records, 'b')];
    for (let index = 0; index < 10; index++) {
      const delivery = { eventId: `EvRACE${index}`, team: 'T1', channel: 'C1', ts: `1700000000.00${100 + index}` };
      const outcomes = await Promise.all([a.firstDelivery(delivery), b.firstDelivery(delivery)]);
      expect(outcomes.filter(Boolean), `delivery ${index}`).toHaveLength(1);
    }
  });
});

test('delivery records on GCS: a first delivery whose answers were lost is still the first', async () => {
  const records = await onGcs[1]();
  gcs.requests.length = 0;
  gcs.loseResponses(2, (request) => (request.query.name ?? '').startsWith('coordination/'));
  expect(await new DeliveryRecords(records, 'a').firstDelivery({ eventId: 'EvLOST', team: 'T1', channel: 'C1', ts: '1.1' })).toBe(true);
  expect(gcs.requests.filter((request) => request.status === 412)).toHaveLength(2);
  expect(await new DeliveryRecords(records, 'b').firstDelivery({ eventId: 'EvLOST', team: 'T1', channel: 'C1', ts: '1.1' })).toBe(false);
});
