"""Relays a Cloud Run session's mailbox to the session runner (issue 13; docs/runner-protocol.md, "Mailbox").

    session_relay.py --bucket B --prefix P --session ID --idle-sec N --end-at EPOCH
                     --token-url unix:///run/oi-token/token.sock [--storage-endpoint URL] -- RUNNER COMMAND...

Started by entrypoint.sh as root, after the thread's prefix is mounted; it starts the runner command
(runner.py --session, as the unprivileged user) with pipes, and then, under
gs://B/P.oi/session/ID/:
  - uploads the runner's `ready` line as ready.json;
  - polls requests/<seq>.json (seq 1, 2, ...) through the GCS JSON API with the session's downscoped
    token (from the token broker, as gcsfuse gets it), every 50 ms for a minute after activity and
    every 250 ms after that, and writes each request as one line to the runner's stdin;
  - uploads the runner's reply to the step request <seq> as results/<seq>.json;
  - ends the session after N seconds without a request or a reply (idle), at EPOCH (the controller
    sets it before the token expires), on an `exit` request, or when the runner ends. On its way out
    it uploads, for each step still waiting, results/<seq>.json = {"type": "ended", ...}, and
    closed.json = {"type": "closed", "reason", "next": <the first seq never taken>, "status"}.
Exit status 0 when the session ended as planned (idle, deadline, exit), 1 when the runner ended on its
own (a crash: the controller reports the step), 2 when the relay itself failed.

The mailbox needs no inbound connection to the job and no gcsfuse cache settings: the JSON API reads
GCS directly (https://cloud.google.com/storage/docs/json_api/v1/objects/get, alt=media; uploads:
https://cloud.google.com/storage/docs/uploading-objects, "simple upload"). Replies come from the
process that runs the thread's code, so the relay only routes them (by step id, in order); the
controller validates them. Nothing about a request, a reply or the token is logged.
"""

import http.client
import json
import queue
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

MAX_LINE_BYTES = 1024 * 1024  # docs/runner-protocol.md: a line is at most 1 MiB in both directions
FAST_POLL_SEC, SLOW_POLL_SEC, FAST_WINDOW_SEC = 0.05, 0.25, 60
EXIT_GRACE_SEC = 10
DEFAULT_ENDPOINT = 'https://storage.googleapis.com'


def log(message):
    print(f'session_relay: {message}', file=sys.stderr, flush=True)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the token broker's unix socket (root-only directory; token_broker.py)."""

    def __init__(self, path):
        super().__init__('localhost', timeout=10)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.unix_path)


def fetch_token(token_url):
    if not token_url.startswith('unix://'):
        raise SystemExit('session_relay: --token-url must be unix:///path')
    connection = UnixHTTPConnection(token_url[len('unix://'):])
    try:
        connection.request('GET', '/')
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise SystemExit(f'session_relay: the token broker answered {response.status}')
    return json.loads(body)['access_token']


class Storage:
    """The few GCS JSON API calls of the mailbox, on one kept-alive connection."""

    def __init__(self, endpoint, bucket, token):
        url = urllib.parse.urlsplit(endpoint)
        self.https = url.scheme == 'https'
        self.host, self.port = url.hostname, url.port
        self.bucket = urllib.parse.quote(bucket, safe='')
        self.token = token
        self.connection = None

    def download(self, name):
        """The object's bytes, or None when it does not exist (or could not be read this time)."""
        path = f'/storage/v1/b/{self.bucket}/o/{urllib.parse.quote(name, safe="")}?alt=media'
        status, body = self._request('GET', path, None)
        if status == 200:
            return body
        if status not in (404, None):
            log(f'reading a request answered {status}')
        return None

    def delete(self, name):
        self._request('DELETE', f'/storage/v1/b/{self.bucket}/o/{urllib.parse.quote(name, safe="")}', None)

    def upload(self, name, data):
        path = f'/upload/storage/v1/b/{self.bucket}/o?uploadType=media&name={urllib.parse.quote(name, safe="")}'
        for attempt in range(6):  # 429 and 5xx are retried with exponential backoff, as GCS asks
            status, _ = self._request('POST', path, data)
            if status == 200:
                return True
            if status is not None and status < 500 and status != 429:
                break
            time.sleep(min(2 ** attempt * 0.5, 8))
        log(f'an upload failed ({status})')
        return False

    def _request(self, method, path, body):
        headers = {'Authorization': f'Bearer {self.token}'}
        if body is not None:
            headers['Content-Type'] = 'application/json'
        for _ in range(2):  # a kept-alive connection the server closed is opened again once
            try:
                if self.connection is None:
                    self.connection = (http.client.HTTPSConnection(self.host, self.port, timeout=30, context=ssl.create_default_context())
                                       if self.https else http.client.HTTPConnection(self.host, self.port, timeout=30))
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read(MAX_LINE_BYTES + 1)
                if not response.isclosed():  # longer than any request line: drop the connection rather than read on
                    self.connection.close()
                    self.connection = None
                return response.status, data
            except (OSError, http.client.HTTPException):
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
        return None, b''


class Runner:
    """The session runner's pipes; its reply lines arrive in `lines` (None marks a line over 1 MiB)."""

    def __init__(self, command):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        skipping = False
        while True:
            line = self.process.stdout.readline(MAX_LINE_BYTES + 2)
            if not line:
                break
            if not line.endswith(b'\n'):
                if not skipping:
                    self.lines.put(None)
                skipping = True
                continue
            if skipping:
                skipping = False
            elif line.strip():
                self.lines.put(line.rstrip(b'\n'))
        self.lines.put(EOFError)

    def send(self, message):
        try:
            self.process.stdin.write(json.dumps(message, separators=(',', ':')).encode() + b'\n')
            self.process.stdin.flush()
            return True
        except OSError:  # the runner is gone; its end arrives through `lines`
            return False

    def stop(self, grace_sec):
        """Asks the runner to exit (EOF), kills it after grace_sec; returns its exit status."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            return self.process.wait(grace_sec)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


class Relay:
    def __init__(self, storage, runner, mailbox, idle_sec, end_at):
        self.storage, self.runner, self.mailbox = storage, runner, mailbox
        self.idle_sec, self.end_at = idle_sec, end_at
        self.next_seq = 1
        self.waiting = []  # [(seq, step id)] of steps sent to the runner and not answered yet
        self.answered = []  # seq of the results uploaded
        self.ready = False
        self.exiting = False
        self.last_activity = time.monotonic()

    def serve(self):
        """Runs until the session ends; returns (reason, runner status)."""
        while True:
            poll_sec = FAST_POLL_SEC if time.monotonic() - self.last_activity < FAST_WINDOW_SEC else SLOW_POLL_SEC
            try:
                line = self.runner.lines.get(timeout=poll_sec)
            except queue.Empty:
                line = False
            if line is EOFError:
                return 'runner-ended', self.runner.stop(EXIT_GRACE_SEC)
            if line is not False:
                self.on_reply(line)
                continue
            # Requests are taken while the runner still starts too: it reads them once it is ready.
            if not self.exiting and self.take_request():
                continue
            if self.exiting:
                continue  # the runner exits after its running step; its EOF ends the loop
            if self.ready and not self.waiting and time.monotonic() - self.last_activity >= self.idle_sec:
                return 'idle', self.runner.stop(EXIT_GRACE_SEC)
            if time.time() >= self.end_at:
                return 'deadline', self.runner.stop(EXIT_GRACE_SEC)

    def take_request(self):
        data = self.storage.download(f'{self.mailbox}requests/{self.next_seq}.json')
        if data is None:
            return False
        seq = self.next_seq
        self.next_seq += 1
        self.last_activity = time.monotonic()
        try:
            message = json.loads(data) if len(data) <= MAX_LINE_BYTES else None
        except ValueError:
            message = None
        kind = message.get('type') if isinstance(message, dict) else None
        if kind not in ('step', 'stop', 'exit'):
            log(f'request {seq} is not a step, stop or exit request: skipped')
            return True
        if kind == 'step':
            self.waiting.append((seq, message.get('id')))
        elif kind == 'exit':
            self.exiting = True
        self.runner.send(message)
        return True

    def on_reply(self, line):
        """Routes one reply line: ready.json once, else the result of the step it answers."""
        try:
            reply = json.loads(line) if line is not None else None
        except ValueError:
            reply = None
        kind = reply.get('type') if isinstance(reply, dict) else None
        if kind == 'ready' and not self.ready:
            self.ready = True
            self.last_activity = time.monotonic()
            self.storage.upload(f'{self.mailbox}ready.json', line)
            return
        if not self.waiting:
            log('a reply came while no step was waiting: dropped')
            return
        index = next((i for i, (_, step_id) in enumerate(self.waiting) if isinstance(reply, dict) and reply.get('id') == step_id), 0)
        seq, step_id = self.waiting.pop(index)
        if line is None:
            line = json.dumps({'type': 'error', 'id': step_id, 'message': f'the runner sent a reply longer than {MAX_LINE_BYTES} bytes'}).encode()
        self.storage.upload(f'{self.mailbox}results/{seq}.json', line)
        self.answered.append(seq)
        self.last_activity = time.monotonic()

    def close(self, reason, status):
        """What the controller needs to know after the end: the steps that got no result, and why."""
        quiet = not self.waiting  # no step was under way: the controller has read every result
        while True:
            try:
                line = self.runner.lines.get_nowait()
            except queue.Empty:
                break
            if line is not EOFError:
                self.on_reply(line)
        detail = f'the session runner exited with status {status}' if status is not None else 'the session runner was lost'
        for seq, step_id in self.waiting:
            ended = {'type': 'ended', 'id': step_id, 'reason': reason, 'detail': detail}
            self.storage.upload(f'{self.mailbox}results/{seq}.json', json.dumps(ended).encode())
        closed = {'type': 'closed', 'reason': reason, 'next': self.next_seq, 'status': status}
        self.storage.upload(f'{self.mailbox}closed.json', json.dumps(closed).encode())
        planned = (reason in ('idle', 'deadline') or (reason == 'runner-ended' and self.exiting)) and status == 0
        if planned and quiet:  # every result was read: only closed.json stays, for a controller that sent a request too late
            names = [f'requests/{seq}.json' for seq in range(1, self.next_seq)] + [f'results/{seq}.json' for seq in self.answered]
            for name in names + ['ready.json']:
                self.storage.delete(f'{self.mailbox}{name}')
        return 0 if planned else 1


def parse_arguments(argv):
    if '--' not in argv:
        raise SystemExit('usage: session_relay.py --bucket B --prefix P --session ID --idle-sec N --end-at EPOCH '
                         '--token-url unix:///PATH [--storage-endpoint URL] -- RUNNER COMMAND...')
    split = argv.index('--')
    flags, command = argv[:split], argv[split + 1:]
    values = dict(zip(flags[0::2], flags[1::2]))
    required = ('--bucket', '--prefix', '--session', '--idle-sec', '--end-at', '--token-url')
    missing = [name for name in required if name not in values]
    if missing or not command or len(flags) % 2:
        raise SystemExit(f'session_relay: missing {", ".join(missing) or "the runner command"}')
    return values, command


def main():
    values, command = parse_arguments(sys.argv[1:])
    runner = Runner(command)  # first: its imports and checkpoint take longest
    storage = Storage(values.get('--storage-endpoint', DEFAULT_ENDPOINT), values['--bucket'], fetch_token(values['--token-url']))
    mailbox = f"{values['--prefix']}.oi/session/{values['--session']}/"
    relay = Relay(storage, runner, mailbox, int(values['--idle-sec']), int(values['--end-at']))
    reason, status = relay.serve()
    log(f'session ended: {reason} (runner status {status}, {relay.next_seq - 1} requests taken)')
    return relay.close(reason, status)


if __name__ == '__main__':
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException as error:  # the relay itself failed: say what, never the token
        log(f'failed: {type(error).__name__}: {error}')
        sys.exit(2)
