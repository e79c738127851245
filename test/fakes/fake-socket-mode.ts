import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

/**
 * Slack's Socket Mode on 127.0.0.1: FakeSlack answers `apps.connections.open` (app token) with this
 * server's ws:// URL; the real @slack/socket-mode client connects, gets `hello`, and must ack each
 * `events_api` envelope by sending back its envelope_id.
 */
export class FakeSocketMode {
  private server: WebSocketServer | undefined;
  private socket: WebSocket | undefined;
  private readonly acks = new Map<string, () => void>();
  private connected: Promise<void> | undefined;

  constructor(readonly appToken: string) {}

  async start(): Promise<this> {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    this.server = server;
    this.connected = new Promise((resolve) => {
      server.on('connection', (socket) => {
        this.socket = socket;
        socket.on('message', (data) => {
          const message = JSON.parse(String(data)) as { envelope_id?: string };
          if (message.envelope_id !== undefined) this.acks.get(message.envelope_id)?.();
        });
        socket.send(JSON.stringify({ type: 'hello', num_connections: 1, connection_info: { app_id: 'A1' }, debug_info: { host: 'fake' } }));
        resolve();
      });
    });
    return this;
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.server!.address() as AddressInfo).port}/link`;
  }

  waitForConnection(): Promise<void> {
    return this.connected!;
  }

  /** Sends an Events API payload and resolves with the time (ms) until the client acked it. */
  async sendEvent(payload: Record<string, unknown>, timeoutMs = 5000): Promise<number> {
    const envelopeId = randomUUID();
    const started = performance.now();
    const acked = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('socket mode event was not acked')), timeoutMs);
      this.acks.set(envelopeId, () => {
        clearTimeout(timer);
        resolve(performance.now() - started);
      });
    });
    this.socket!.send(JSON.stringify({ envelope_id: envelopeId, payload, type: 'events_api', accepts_response_payload: false, retry_attempt: 0, retry_reason: '' }));
    return acked;
  }

  async close(): Promise<void> {
    for (const client of this.server?.clients ?? []) client.terminate();
    await new Promise<void>((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())));
  }
}
