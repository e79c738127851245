import type { Server } from 'node:http';
import { closeServer, listenLocal, sendJson } from './http-helpers.js';

/**
 * The metadata server as code inside a Cloud Run container sees it
 * (https://cloud.google.com/run/docs/container-contract#metadata-server): the default service account's access
 * token and email, only with the `Metadata-Flavor: Google` header (403 without it, as the real one refuses).
 * Anything else answers 404 and is recorded in `unexpected`.
 */
export class FakeMetadataServer {
  readonly unexpected: string[] = [];
  readonly requests: string[] = [];
  private server: Server | undefined;

  constructor(readonly account: { email: string; token: string }) {}

  /** host:port, what GCE_METADATA_HOST takes. */
  async start(): Promise<string> {
    const { server, port } = await listenLocal((request, response) => {
      const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
      this.requests.push(path);
      if (request.headers['metadata-flavor'] !== 'Google') return sendJson(response, 403, { error: 'Missing Metadata-Flavor:Google header.' });
      const base = '/computeMetadata/v1/instance/service-accounts/default/';
      if (path === `${base}token`) return sendJson(response, 200, { access_token: this.account.token, expires_in: 3599, token_type: 'Bearer' });
      if (path === `${base}email`) {
        response.writeHead(200, { 'content-type': 'application/text', 'metadata-flavor': 'Google' });
        return void response.end(this.account.email);
      }
      this.unexpected.push(path);
      response.writeHead(404).end();
    });
    this.server = server;
    return `127.0.0.1:${port}`;
  }

  async close(): Promise<void> {
    if (this.server !== undefined) await closeServer(this.server);
  }
}
