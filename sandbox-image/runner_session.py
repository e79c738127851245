"""Session mode: one long-lived runner serves the steps of one thread (issue 13); docs/runner-protocol.md.

    runner.py --workspace DIR --session [--user UID:GID] [--own-pid-namespace] [--limits JSON]

Control channel: requests are JSON lines on stdin, replies JSON lines on a private duplicate of the
original stdout. Once the channel is set up, fds 0, 1 and 2 point at /dev/null (at the step's
capture files while a step runs), so neither the user's code nor the programs it starts can read a
request or write a reply by accident.

    → {"type":"ready","restored":"checkpoint"|"fresh","notes":[...]}            once, after start-up
    ← {"type":"step","id","code","timeoutSec","limits","maxOutputBytes"}          run a step
    → {"type":"result","id",...RunnerResultFile fields...,"restored":"memory"|"checkpoint"|"fresh","displays":[...]}
    ← {"type":"stop","id"}     Stop that step, running or queued (same as SIGINT; ignored otherwise)
    ← {"type":"exit"}, or EOF  end the session after the running step
    → {"type":"error","id"?,"message"}                                            a request was refused

Globals live in memory between steps (Jupyter semantics); after every step they are also saved to
the checkpoint with a new stamp (runner_state). Before a step, a stamp that is not the one this
session wrote means another runner wrote the checkpoint since: the session reloads it and says
`restored: "checkpoint"`. The first step of a session reports what start-up restored.
"""

import json
import os
import queue
import signal
import threading

import runner_bounds
import runner_limits
import runner_state
import runner_step

# Imported once per session when present, so no later step pays for them (issue 13: a warm session). They are
# imported while the session waits for a step, one at a time after `ready`, not before it: a first step that
# needs none of them does not wait for them (on Cloud Run it is usually queued before the runner is ready), and
# one that needs them imports them itself, as it would have waited for them anyway.
PRELOADED_MODULES = ('dill', 'numpy', 'pandas', 'matplotlib', 'matplotlib.pyplot')


def preloaded_modules():
    """OI_SESSION_PRELOAD (comma-separated module names, empty for none) replaces the list above: the
    local sandbox starts a session for every new thread, and on a small host importing these for each
    of many new threads costs more CPU than it saves (a step then imports a library when it first uses
    it, once per session; restoring a checkpoint imports what its values need)."""
    configured = os.environ.get('OI_SESSION_PRELOAD')
    if configured is None:
        return PRELOADED_MODULES
    return tuple(name.strip() for name in configured.split(',') if name.strip())
MAX_REQUEST_BYTES = 1024 * 1024
STEP_ID_CHARACTERS = frozenset('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_')
LIMIT_NAMES = ('memoryMb', 'cpuSec', 'maxProcesses', 'maxFileMb')
# Signals the reader thread blocks, so the kernel delivers them to the main thread (a blocking call
# of the user's code there is then interrupted, and the handler runs at once).
STEP_SIGNALS = {signal.SIGINT, signal.SIGALRM, signal.SIGPROF, signal.SIGXCPU}
# The original stderr, for the runner's own failure (runner.py writes the traceback there).
diagnostics_fd = 2


class ControlChannel:
    def __init__(self):
        self.input_fd = os.dup(0)  # os.dup: not inherited by programs the code starts
        self.reply_fd = os.dup(1)
        global diagnostics_fd
        self.diagnostics_fd = diagnostics_fd = os.dup(2)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        self.messages = queue.Queue()
        # Which steps are queued or running, so that a stop finds its step wherever it is (the lock
        # keeps the reader thread and the main thread from seeing a step in neither place).
        self.step_lock = threading.Lock()
        self.queued_ids = set()
        self.stopped_before_start = set()
        self.running_id = None
        self.main_thread = threading.main_thread().ident
        self.write_lock = threading.Lock()

    def start_reading(self):
        threading.Thread(target=self._read_loop, name='runner-control', daemon=True).start()

    def send(self, reply):
        data = reply if isinstance(reply, bytes) else runner_bounds.encode_reply(reply)
        with self.write_lock:
            view = memoryview(data + b'\n')
            while view:
                view = view[os.write(self.reply_fd, view):]

    def _read_loop(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, STEP_SIGNALS)
        try:
            for line in _lines(self.input_fd):
                self._dispatch(line)
        except OSError:
            pass
        self.messages.put({'type': 'exit'})

    def _dispatch(self, line):
        if line is None:
            self._refuse(None, f'request line longer than {MAX_REQUEST_BYTES} bytes')
            return
        try:
            message = json.loads(line)
        except ValueError:
            self._refuse(None, 'request is not JSON')
            return
        kind = message.get('type') if isinstance(message, dict) else None
        if kind == 'stop':
            self._stop(message.get('id'))
        elif kind == 'exit':
            self.messages.put(message)
        elif kind == 'step':
            problem = validate_step(message)
            if problem is None:
                with self.step_lock:
                    self.queued_ids.add(message['id'])
                self.messages.put(message)
            else:
                self._refuse(message.get('id'), problem)
        else:
            self._refuse(None, f'unknown request type {str(kind)[:50]!r}')

    def _stop(self, step_id):
        """Stop the running step (SIGINT to the main thread, so a blocking call is interrupted too), or
        mark a queued one to be stopped as soon as it starts."""
        with self.step_lock:
            if self.running_id is not None and step_id in (None, self.running_id):
                signal.pthread_kill(self.main_thread, signal.SIGINT)
            elif step_id in self.queued_ids:
                self.stopped_before_start.add(step_id)

    def begin(self, step_id, signals):
        """The main thread takes a step from the queue: it is running from now on for a stop."""
        with self.step_lock:
            self.queued_ids.discard(step_id)
            self.running_id = step_id
            signals.begin_step(stopped=step_id in self.stopped_before_start)
            self.stopped_before_start.discard(step_id)

    def finish(self):
        with self.step_lock:
            self.running_id = None

    def _refuse(self, step_id, problem):
        reply = {'type': 'error', 'message': problem}
        if isinstance(step_id, str) and valid_step_id(step_id):
            reply['id'] = step_id
        try:
            self.send(reply)
        except OSError:
            pass


def _lines(fd):
    """Request lines as bytes; None for a line over MAX_REQUEST_BYTES (skipped up to its newline)."""
    buffer, skipping = b'', False
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buffer += chunk
        while True:
            end = buffer.find(b'\n')
            if end < 0:
                if len(buffer) > MAX_REQUEST_BYTES:
                    if not skipping:
                        yield None
                    buffer, skipping = b'', True
                break
            line, buffer = buffer[:end], buffer[end + 1:]
            if skipping:
                skipping = False
            elif len(line) > MAX_REQUEST_BYTES:
                yield None
            elif line.strip():
                yield line


def valid_step_id(step_id):
    return 0 < len(step_id) <= 64 and all(character in STEP_ID_CHARACTERS for character in step_id)


def validate_step(message):
    """None when the step request is well formed, else what is wrong with it."""
    step_id = message.get('id')
    if not isinstance(step_id, str) or not valid_step_id(step_id):
        return 'id must be 1-64 characters of A-Z, a-z, 0-9, - and _'
    if not isinstance(message.get('code'), str):
        return 'code must be a string'
    if message.get('language', 'python') != 'python':
        return 'language must be python'
    if not _is_number(message.get('timeoutSec', 0)) or message.get('timeoutSec', 0) < 0:
        return 'timeoutSec must be a number >= 0'
    limits = message.get('limits')
    if not isinstance(limits, dict) or not all(_is_number(limits.get(name)) and limits[name] > 0 for name in LIMIT_NAMES):
        return 'limits must hold ' + ', '.join(LIMIT_NAMES) + ' (numbers > 0)'
    if not _is_number(message.get('maxOutputBytes', 1)) or message.get('maxOutputBytes', 1) <= 0:
        return 'maxOutputBytes must be a number > 0'
    return None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Session:
    def __init__(self, environment, namespace, channel):
        self.environment = environment
        self.namespace = namespace
        self.channel = channel
        self.cpu_budget = runner_limits.SessionCpuBudget()
        self.applied_limits = None
        self.known_stamp = None
        self.first_restored = 'fresh'

    def start(self, limits):
        """Limits (when given) and the checkpoint; then the ready line."""
        notes = list(self.environment.processes.notes)
        if limits is not None:
            self._apply_limits(limits, notes)
        self.known_stamp = runner_state.read_stamp(runner_step.STATE_PATH)
        try:
            loaded = runner_state.restore(runner_step.STATE_PATH, self.namespace, notes)
        except BaseException as exc:  # a saved value's __reduce__ may raise anything
            loaded = False
            notes.append(f'The saved Python state could not be loaded ({type(exc).__name__}).')
        self.first_restored = 'checkpoint' if loaded else 'fresh'
        self.channel.send({'type': 'ready', 'restored': self.first_restored, 'notes': runner_bounds.bound_notes(notes)})

    def serve(self):
        self.channel.start_reading()
        preload = list(preloaded_modules())
        while True:
            try:
                message = self.channel.messages.get(block=not preload)
            except queue.Empty:  # nothing to do: import the next common library meanwhile
                _preload(preload.pop(0))
                continue
            if message.get('type') != 'step':
                break
            self.channel.send(self.run(message))
        self.environment.processes.end_all([])

    def run(self, request):
        notes = []
        self._apply_limits(request['limits'], notes)
        restored = self.first_restored if self.first_restored is not None else 'memory'
        self.first_restored = None

        def reload_if_stale(step_notes):
            nonlocal restored
            stamp = runner_state.read_stamp(runner_step.STATE_PATH)
            if stamp is not None and stamp != self.known_stamp:
                runner_state.clear(self.namespace)
                loaded = runner_state.restore(runner_step.STATE_PATH, self.namespace, step_notes)
                restored = 'checkpoint' if loaded else 'fresh'

        self.channel.begin(request['id'], self.environment.signals)
        try:
            result = runner_step.run_step(request, self.namespace, self.environment, prepare=reload_if_stale,
                                          cpu_budget=self.cpu_budget, flush_open_files=True)
        finally:
            self.channel.finish()
        # When the stamp could not be written, the file still holds the one before: not a sign of another writer.
        self.known_stamp = runner_state.last_stamp or runner_state.read_stamp(runner_step.STATE_PATH)
        result['notes'] = runner_bounds.bound_notes(notes + result['notes'])
        return runner_bounds.fit_reply({'type': 'result', **result, 'restored': restored})

    def _apply_limits(self, limits, notes):
        wanted = {name: limits[name] for name in LIMIT_NAMES}
        if wanted == self.applied_limits:
            return
        try:
            runner_limits.apply_common_limits(wanted)
            self.applied_limits = wanted
        except (OSError, ValueError) as exc:  # a limit above the hard limit set by an earlier step
            notes.append(f'The resource limits could not be changed for this session ({exc}).')


def _preload(name):
    try:
        __import__(name)
    except BaseException:  # absent (a bare Python) or broken: the step that needs it will say so
        pass


def serve(environment, namespace, limits_json):
    channel = ControlChannel()
    session = Session(environment, namespace, channel)
    session.start(json.loads(limits_json) if limits_json else None)
    session.serve()
