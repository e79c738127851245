"""Serves the step's downscoped access token to gcsfuse (`--token-url unix://SOCKET`).

Started by entrypoint.sh as root, before the privileges are dropped. The token comes from the
environment (OI_TOKEN, OI_TOKEN_EXPIRES_AT) and is never put on a command line, where any user
could read it in /proc/*/cmdline. The socket lives in a root-only directory (0700), so the
unprivileged user that runs the code cannot connect; gcsfuse, running as root, can.

Response: the JSON of an OAuth2 token as golang.org/x/oauth2 decodes it (gcsfuse's proxy token
source): {"access_token": ..., "token_type": "Bearer", "expires_in": seconds, "expiry": RFC 3339}.

Usage: token_broker.py SOCKET_PATH
"""

import http.server
import json
import os
import socketserver
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    token = ''
    expires_at = 0

    def do_GET(self):
        remaining = max(0, int(self.expires_at - time.time()))
        body = json.dumps({
            'access_token': self.token,
            'token_type': 'Bearer',
            'expires_in': remaining,
            'expiry': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.expires_at)),
        }).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return 'unix'  # a unix socket has no client address

    def log_message(self, format, *args):
        pass  # never log requests: nothing about the token belongs in logs


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    if len(sys.argv) != 2:
        raise SystemExit('usage: token_broker.py SOCKET_PATH')
    Handler.token = os.environ.pop('OI_TOKEN', '')
    if not Handler.token:
        raise SystemExit('token_broker: OI_TOKEN is not set')
    expires = os.environ.pop('OI_TOKEN_EXPIRES_AT', '')
    Handler.expires_at = int(expires) if expires.isdigit() else int(time.time()) + 3600
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    old_mask = os.umask(0o177)  # the socket is created 0600
    try:
        server = Server(path, Handler)
    finally:
        os.umask(old_mask)
    server.serve_forever()


if __name__ == '__main__':
    main()
