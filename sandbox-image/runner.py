"""Runs one step of a thread's code (DESIGN.md "The step protocol").

    runner.py --workspace DIR --step ID

Reads DIR/.oi/steps/ID/request.json (StepRequestFile in controller/sandbox/sandbox.ts), runs the code
like a notebook cell with DIR as working directory, and writes DIR/.oi/steps/ID/result.json
(RunnerResultFile: the field names mirror the TypeScript type). The same runner serves the local
sandbox (plain process or bubblewrap) and the Cloud Run job.

Exit status: 0 whenever a result was written, including when the user's code raised (that is data);
non-zero only when the runner itself failed. Only the standard library is needed; dill (state of
functions and classes), matplotlib and pandas are used when present and when the code needs them.
"""

import ast
import builtins
import codecs
import errno
import io
import json
import linecache
import os
import resource
import signal
import stat
import sys
import time
import traceback
import types

sys.dont_write_bytecode = True  # the runner's folder is read-only in a jail and part of the repository

import runner_figures  # sits beside this file (sys.path[0] is the runner's folder)
import runner_state

INTERNAL_DIR = '.oi'
RUNNER_FILE = os.path.abspath(__file__)
RUNNER_PID = os.getpid()


class StepTimeout(BaseException):
    """Raised in the user's code when the step's time is up (BaseException: `except Exception` cannot swallow it)."""


class CpuLimitExceeded(BaseException):
    """Raised in the user's code on SIGXCPU (RLIMIT_CPU soft limit reached)."""


# ---------------------------------------------------------------------------------------------- limits

def apply_limits(limits, marker_path):
    """Applies the request's resource limits to this process and everything it starts."""
    mib = 1024 * 1024

    def set_limit(kind, soft, hard=None):
        hard = soft if hard is None else hard
        _, current_hard = resource.getrlimit(kind)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(kind, (soft, hard))

    set_limit(resource.RLIMIT_AS, int(limits['memoryMb']) * mib)
    # Soft CPU limit sends SIGXCPU (turned into an exception below); the hard one kills a process
    # that keeps computing in C code. The marker tells the controller why the runner died.
    cpu = int(limits['cpuSec'])
    set_limit(resource.RLIMIT_CPU, cpu, cpu + 5)
    set_limit(resource.RLIMIT_FSIZE, int(limits['maxFileMb']) * mib)
    # RLIMIT_NPROC counts every process of the real uid (per user namespace); processes that already
    # exist must not eat the budget of the step, so the limit is on top of them.
    set_limit(resource.RLIMIT_NPROC, int(limits['maxProcesses']) + count_own_processes())

    def on_cpu_limit(signum, frame):
        write_marker(marker_path, 'cpu')
        raise CpuLimitExceeded()

    signal.signal(signal.SIGXCPU, on_cpu_limit)


def drop_privileges(user):
    """`--user UID:GID`: a root-started runner (bubblewrap without a user namespace, or a root
    controller without bubblewrap) becomes the thread's unprivileged uid before anything else runs.
    The kernel ignores RLIMIT_NPROC for root, so this is what makes the process limit real."""
    uid, gid = (int(part) for part in user.split(':'))
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise RuntimeError('could not drop privileges')
    try:  # no setuid binary (su, sudo) may raise the privileges again
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    except Exception:
        pass


def count_own_processes():
    uid = os.getuid()
    count = 0
    try:
        for name in os.listdir('/proc'):
            if name.isdigit():
                try:
                    if os.stat('/proc/' + name).st_uid == uid:
                        count += 1
                except OSError:
                    pass
    except OSError:
        return 1
    return count


def write_marker(path, text):
    try:
        with open(path, 'w') as handle:
            handle.write(text)
    except OSError:
        pass


def describe_limit(exc, limits, timeout_sec):
    """(limit kind, one sentence) when the exception means a limit was hit, else None."""
    if isinstance(exc, StepTimeout):
        return 'timeout', f'The step was stopped after {timeout_sec} s (STEP_TIMEOUT_SEC).'
    if isinstance(exc, CpuLimitExceeded):
        return 'cpu', f'The step used its CPU time limit (SANDBOX_CPU_SEC={limits["cpuSec"]} s) and was stopped.'
    if isinstance(exc, MemoryError):
        return 'memory', f'The step ran out of memory: memory limit (SANDBOX_MEMORY_MB={limits["memoryMb"]}) reached.'
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return 'file_size', f'A file grew past the file size limit (SANDBOX_MAX_FILE_MB={limits["maxFileMb"]}).'
    text = str(exc)
    starts_process = isinstance(exc, OSError) and exc.errno == errno.EAGAIN and is_process_start(exc)
    if starts_process or (isinstance(exc, RuntimeError) and "can't start new thread" in text):
        return 'processes', f'The step hit the process limit (SANDBOX_MAX_PROCESSES={limits["maxProcesses"]}): fork failed.'
    return None


def is_process_start(exc):
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code
        if 'subprocess' in code.co_filename or code.co_name in ('_execute_child', '_fork_exec', 'spawnv', 'system'):
            return True
        line = linecache.getline(code.co_filename, frame.f_lineno)
        if 'fork' in line or 'Popen' in line or 'system(' in line or 'spawn' in line:
            return True
    return False


# ---------------------------------------------------------------------------------------------- output

class CapturedOutput:
    """Points fds 1 and 2 at files, so output of child processes (os.system, subprocess) is kept too."""

    def __init__(self, step_dir):
        self.paths = (os.path.join(step_dir, 'stdout.log'), os.path.join(step_dir, 'stderr.log'))

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved_fds = (os.dup(1), os.dup(2))
        self.saved_streams = (sys.stdout, sys.stderr)
        for fd, path in zip((1, 2), self.paths):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            os.dup2(target, fd)
            os.close(target)
        sys.stdout, sys.stderr = (
            io.TextIOWrapper(io.FileIO(fd, 'w', closefd=False), encoding='utf-8', errors='backslashreplace',
                             line_buffering=True, write_through=True)
            for fd in (1, 2)
        )
        return self

    def __exit__(self, *exc_info):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        sys.stdout, sys.stderr = self.saved_streams
        for fd, saved in zip((1, 2), self.saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        return False

    def read(self, max_bytes):
        """(stdout, stderr, truncated): head and tail of each file, with a note of what was cut."""
        texts, truncated = [], False
        for path in self.paths:
            text, cut = read_bounded(path, max_bytes)
            texts.append(text)
            truncated = truncated or cut
            try:
                os.unlink(path)
            except OSError:
                pass
        return texts[0], texts[1], truncated


def read_bounded(path, max_bytes):
    try:
        with open(path, 'rb') as handle:
            size = os.fstat(handle.fileno()).st_size
            if size <= max_bytes:
                return handle.read().decode('utf-8', 'replace'), False
            head = handle.read(max_bytes // 2)
            handle.seek(size - (max_bytes - len(head)))
            tail = handle.read()
    except OSError:
        return '', False
    cut = size - len(head) - len(tail)
    note = f'\n[... {cut} bytes of output cut ...]\n'
    # Cutting may split a UTF-8 character: drop the broken halves rather than show replacement marks.
    head_text = codecs.getincrementaldecoder('utf-8')('replace').decode(head, final=False)
    tail_text = tail.lstrip(bytes(range(0x80, 0xC0))).decode('utf-8', 'replace')
    return head_text + note + tail_text, True


# ---------------------------------------------------------------------------------------------- files

def snapshot(root):
    """{relative path: (size, mtime_ns)} of regular files, never following symlinks, without .oi/."""
    files = {}

    def walk(directory, prefix):
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            relative = prefix + entry.name
            if relative == INTERNAL_DIR:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                walk(entry.path, relative + '/')
            elif stat.S_ISREG(info.st_mode):
                files[relative] = (info.st_size, info.st_mtime_ns)

    walk(root, '')
    return files


def compare(before, after):
    changes = []
    for path in sorted(set(before) | set(after)):
        if path not in before:
            changes.append({'path': path, 'change': 'created', 'size': after[path][0]})
        elif path not in after:
            changes.append({'path': path, 'change': 'deleted', 'size': 0})
        elif before[path] != after[path]:
            changes.append({'path': path, 'change': 'modified', 'size': after[path][0]})
    return changes


# ---------------------------------------------------------------------------------------------- code

def run_cell(code, namespace, filename):
    """Runs code like a notebook cell: when the last statement is an expression, prints its repr."""
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    tree = ast.parse(code, filename, 'exec')
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, 'exec'), namespace)
    if last is not None:
        value = eval(compile(last, filename, 'eval'), namespace)
        if value is not None:
            print(repr(value))


def describe_error(exc):
    """The error with a traceback of the user's code only (the runner's own frames are left out)."""
    summary = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    seen = set()
    pending = [summary]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = traceback.StackSummary.from_list(
            [frame for frame in current.stack if frame.filename != RUNNER_FILE])
        pending.extend((current.__cause__, current.__context__))
    text = ''.join(summary.format())
    return {'name': type(exc).__name__, 'value': str(exc), 'traceback': text}


def parse_arguments(argv):
    """--workspace DIR --step ID [--user UID:GID] (argparse is not imported: it costs ~4 ms at every start)."""
    usage = 'usage: runner.py --workspace DIR --step ID [--user UID:GID]'
    if '--help' in argv or '-h' in argv:
        print(usage)
        raise SystemExit(0)
    values = {'workspace': None, 'step': None, 'user': None}
    if len(argv) % 2 != 0:
        raise SystemExit(usage)
    for flag, value in zip(argv[::2], argv[1::2]):
        name = flag[2:] if flag.startswith('--') else None
        if name not in values:
            raise SystemExit(f'unknown argument {flag!r}; {usage}')
        values[name] = value
    if values['workspace'] is None or values['step'] is None:
        raise SystemExit(usage)
    if not all(c.isalnum() or c in '-_' for c in values['step']):
        raise SystemExit(f'runner: invalid step id {values["step"]!r}')
    return types.SimpleNamespace(**values)


def main():
    args = parse_arguments(sys.argv[1:])
    workspace = os.path.abspath(args.workspace)
    # Enter the workspace before dropping privileges when possible (without bubblewrap its parents
    # may not be traversable by the thread's uid), after when only the dropped uid may enter it
    # (bubblewrap as root keeps no CAP_DAC_OVERRIDE). Everything after uses paths relative to it.
    try:
        os.chdir(workspace)
        entered = True
    except OSError:
        entered = False
    if args.user:
        drop_privileges(args.user)
    if not entered:
        os.chdir(workspace)
    sys.path[0] = ''  # like a notebook: the user's own modules in the working directory are importable
    step_dir = os.path.join(INTERNAL_DIR, 'steps', args.step)
    with open(os.path.join(step_dir, 'request.json'), encoding='utf-8') as handle:
        request = json.load(handle)
    os.environ.setdefault('MPLBACKEND', 'Agg')
    # Keep a writable MPLCONFIGDIR the image prepared (its font cache is prebuilt; CJK fonts are slow
    # to index); otherwise use one inside the workspace so the cache survives between steps.
    configured = os.environ.get('MPLCONFIGDIR', '')
    if not (configured and os.path.isdir(configured) and os.access(configured, os.W_OK)):
        os.environ['MPLCONFIGDIR'] = os.path.abspath(os.path.join(INTERNAL_DIR, 'matplotlib'))
    limits = request['limits']
    timeout_sec = request.get('timeoutSec', 0)
    marker_path = os.path.join(step_dir, 'limit')
    apply_limits(limits, marker_path)
    runner_figures.install_pyplot_hook()

    started = time.monotonic()
    notes = []
    module = types.ModuleType('__main__')
    module.__dict__['__builtins__'] = builtins
    sys.modules['__main__'] = module
    namespace = module.__dict__
    state_path = os.path.join(INTERNAL_DIR, 'state.pkl')
    before = snapshot('.')
    error, limit = None, None

    def on_timeout(signum, frame):
        write_marker(marker_path, 'timeout')
        raise StepTimeout()

    output = CapturedOutput(step_dir)
    with output:
        try:
            runner_state.restore(state_path, namespace, notes)
            if timeout_sec:
                signal.signal(signal.SIGALRM, on_timeout)
                signal.setitimer(signal.ITIMER_REAL, float(timeout_sec))
            run_cell(request['code'], namespace, f'<step {args.step[:8]}>')
        except BaseException as exc:  # the user's code failing is data, whatever it raised
            if os.getpid() != RUNNER_PID:
                os._exit(1)  # a process forked by the user's code: it must not write the result
            if isinstance(exc, SystemExit) and exc.code in (None, 0):
                pass
            else:
                error = describe_error(exc)
                described = describe_limit(exc, limits, timeout_sec)
                if described is not None:
                    limit, message = described
                    error['value'] = message + (f' ({exc})' if str(exc) else '')
        finally:
            if os.getpid() != RUNNER_PID:
                os._exit(0)
            signal.setitimer(signal.ITIMER_REAL, 0)
        figures = runner_figures.save_open_figures(notes)
        unsaved = runner_state.save(state_path, namespace, notes)
    duration_ms = int((time.monotonic() - started) * 1000)
    stdout, stderr, truncated = output.read(int(request.get('maxOutputBytes', 100_000)))

    result = {
        'id': request['id'],
        'stdout': stdout,
        'stderr': stderr,
        'outputTruncated': truncated,
        'error': error,
        'durationMs': duration_ms,
        'figures': figures,
        'files': compare(before, snapshot('.')),
        'unsaved': unsaved,
        'notes': notes,
    }
    if limit is not None:
        result['limit'] = limit
    result_path = os.path.join(step_dir, 'result.json')
    temporary = result_path + '.tmp'
    # backslashreplace: a file name that is not UTF-8 becomes a JSON \udcXX escape, not a crash
    with open(temporary, 'w', encoding='utf-8', errors='backslashreplace') as handle:
        json.dump(result, handle, ensure_ascii=False)
    os.replace(temporary, result_path)


if __name__ == '__main__':
    try:
        main()
    except BaseException:  # the runner itself failed: say why on stderr, exit non-zero
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(2)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: threads the user's code left running must not keep the step alive.
    os._exit(0)
