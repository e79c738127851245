"""Resource limits, privileges and the signals that stop a step (timeout, CPU, Stop).

One-shot mode (one process per step) keeps the limits it always had: RLIMIT_CPU soft = the step's
CPU seconds (SIGXCPU raises CpuLimitExceeded), hard = 5 s more (the kernel kills code stuck in C).

Session mode (one process for many steps) cannot use RLIMIT_CPU alone: the kernel counts the
process's CPU time since it started, not per step, and an unprivileged process can lower its hard
limit but never raise it again. So a session step gets:
  - ITIMER_PROF, reset at every step, which counts this process's CPU time (all its threads) from
    the start of the step and sends SIGPROF after `cpuSec`: CpuLimitExceeded in the user's code;
  - RLIMIT_CPU's *soft* limit moved to (CPU used so far + cpuSec + CPU_GRACE_SEC) with SIGXCPU left
    at its default action, as the backstop for code stuck in C or ignoring SIGPROF: the kernel ends
    the session (the controller sees SIGXCPU and restarts from the checkpoint). The soft limit can
    be raised again for the next step; the hard limit is never touched;
  - processes forked by Python code in the step (multiprocessing) get RLIMIT_CPU soft = cpuSec +
    grace of their own (their counter starts at zero); processes started with exec (subprocess,
    os.system) inherit the session's soft limit, so they are bounded by the step's wall-clock
    timeout, and all of them are ended with the step (runner_processes).
"""

import errno
import linecache
import math
import os
import resource
import signal
import traceback

MIB = 1024 * 1024
CPU_GRACE_SEC = 5


class StepTimeout(BaseException):
    """Raised in the user's code when the step's time is up (BaseException: `except Exception` cannot swallow it)."""


class CpuLimitExceeded(BaseException):
    """Raised in the user's code when the step used its CPU time."""


class StepSignals:
    """SIGINT (Stop), SIGALRM (timeout) and SIGPROF (session CPU budget) raise in the user's code only
    while a step is armed; outside a step they are ignored, so a late Stop cannot break the runner.
    A Stop that arrives while a step prepares (before its code runs) is kept and raised when the code
    starts. The handlers are Python handlers, never SIG_IGN: an ignored signal would stay ignored in
    every program the user's code starts."""

    def __init__(self):
        self.armed = False
        self.step_active = False
        self.stop_pending = False
        self.marker_path = None

    def begin_step(self, stopped=False):
        """From here on a Stop is kept until the step's code runs (stopped: one came before)."""
        self.install()
        self.stop_pending = stopped
        self.step_active = True

    def end_step(self):
        self.step_active = False
        self.stop_pending = False

    def install(self):
        """(Re)installs the handlers: the user's code of an earlier step may have replaced them."""
        signal.signal(signal.SIGINT, self._on_interrupt)
        signal.signal(signal.SIGALRM, self._on_timeout)
        signal.signal(signal.SIGPROF, self._on_cpu)

    def arm(self, marker_path, timeout_sec, cpu_sec=None):
        self.marker_path = marker_path
        self.install()
        self.armed = True
        if self.stop_pending:
            self.stop_pending = False
            raise KeyboardInterrupt()
        if timeout_sec:
            signal.setitimer(signal.ITIMER_REAL, float(timeout_sec))
        if cpu_sec:
            signal.setitimer(signal.ITIMER_PROF, float(cpu_sec))

    def disarm(self):
        """Idempotent. `armed` is cleared first: a signal after that point can no longer raise."""
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)

    def _on_interrupt(self, signum, frame):
        if self.armed:
            raise KeyboardInterrupt()
        if self.step_active:
            self.stop_pending = True

    def _on_timeout(self, signum, frame):
        if self.armed:
            write_marker(self.marker_path, 'timeout')
            raise StepTimeout()

    def _on_cpu(self, signum, frame):
        if self.armed:
            write_marker(self.marker_path, 'cpu')
            raise CpuLimitExceeded()


def set_limit(kind, soft, hard=None):
    """Sets a limit, never above the current hard limit (an unprivileged process cannot raise it)."""
    hard = soft if hard is None else hard
    _, current_hard = resource.getrlimit(kind)
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(kind, (soft, hard))


def apply_common_limits(limits):
    """Memory, file size, processes and no core files: the same for one step or a whole session."""
    set_limit(resource.RLIMIT_CORE, 0)
    set_limit(resource.RLIMIT_AS, int(limits['memoryMb']) * MIB)
    set_limit(resource.RLIMIT_FSIZE, int(limits['maxFileMb']) * MIB)
    # RLIMIT_NPROC counts every task (process or thread) of the real uid (per user namespace); the
    # ones that already exist must not eat the budget of the step, so the limit is on top of them.
    set_limit(resource.RLIMIT_NPROC, int(limits['maxProcesses']) + count_own_tasks())


def apply_one_shot_limits(limits, marker_path):
    """One-shot mode: the common limits plus RLIMIT_CPU for this process, which runs one step only."""
    apply_common_limits(limits)
    cpu = int(limits['cpuSec'])
    set_limit(resource.RLIMIT_CPU, cpu, cpu + CPU_GRACE_SEC)

    def on_cpu_limit(signum, frame):
        write_marker(marker_path, 'cpu')
        raise CpuLimitExceeded()

    signal.signal(signal.SIGXCPU, on_cpu_limit)


class SessionCpuBudget:
    """The per-step CPU limit of a session (see the module's docstring)."""

    def __init__(self):
        self.step_cpu_sec = None
        os.register_at_fork(after_in_child=self._in_forked_child)

    def start(self, cpu_sec):
        self.step_cpu_sec = int(cpu_sec)
        signal.signal(signal.SIGXCPU, signal.SIG_DFL)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = math.ceil(usage.ru_utime + usage.ru_stime)
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        wanted = used + self.step_cpu_sec + CPU_GRACE_SEC
        resource.setrlimit(resource.RLIMIT_CPU, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))

    def end(self):
        self.step_cpu_sec = None
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))

    def _in_forked_child(self):
        if self.step_cpu_sec is not None:
            try:
                set_limit(resource.RLIMIT_CPU, self.step_cpu_sec + CPU_GRACE_SEC, resource.getrlimit(resource.RLIMIT_CPU)[1])
            except (OSError, ValueError):
                pass


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


def count_own_tasks():
    """Processes and threads of this uid (what RLIMIT_NPROC counts)."""
    uid = os.getuid()
    count = 0
    try:
        names = os.listdir('/proc')
    except OSError:
        return 1
    for name in names:
        if not name.isdigit():
            continue
        try:
            if os.stat('/proc/' + name).st_uid == uid:
                count += len(os.listdir(f'/proc/{name}/task'))
        except OSError:
            pass
    return max(count, 1)


# The workspace folder, for write_marker: the user's code may have changed directory.
workspace_fd = None


def write_marker(path, text):
    """Tells the controller why the runner died, should it die before writing a result (path is
    relative to the workspace)."""
    if path is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=workspace_fd)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
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
    try:
        text = str(exc)
    except BaseException:
        text = ''
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
