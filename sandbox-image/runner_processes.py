"""No process outlives its step (issue 14, finding 8): before the result is written, every process the
step started is killed and gone, so nothing writes to the workspace while the controller reads it.

The runner makes itself a child subreaper (PR_SET_CHILD_SUBREAPER) at start: a process of the step
whose parent exits (a double fork, `setsid`, a daemon) is re-parented to the runner instead of to
init, so every process the step started stays a descendant of the runner. At the end of a step:

- `--own-pid-namespace` (the runner is inside bubblewrap's private pid namespace, or a container's):
  kill(-1, SIGKILL) as the runner's uid reaches every process of that uid in the namespace except
  the runner itself and the namespace's init, then the runner waits until /proc (the namespace's
  own, as bubblewrap's --proc mounts it) shows no other living process of its uid. Honoured only
  when the runner's parent is the namespace's pid 1 (or the runner is pid 1); outside a private pid
  namespace kill(-1) would reach every process of the uid on the host, the controller included.
- otherwise: the runner's descendants only (found through /proc/<pid>/task/<tid>/children, else by
  scanning /proc for parent pids) are killed, round after round until none is left; processes
  that are not descendants of the runner are never touched.
Zombies the runner inherited are reaped. Threads the user's code started live on (Jupyter keeps
them too); processes they start between steps end with the next step.
"""

import ctypes
import os
import signal
import time

PR_SET_CHILD_SUBREAPER = 36
WAIT_SEC = 5.0


class StepProcesses:
    def __init__(self, own_pid_namespace):
        self.pid = os.getpid()
        self.notes = []
        self.kill_all = bool(own_pid_namespace) and (self.pid == 1 or os.getppid() == 1)
        if own_pid_namespace and not self.kill_all:
            self.notes.append('--own-pid-namespace was given but the runner is not a child of its pid namespace\'s '
                              'init: only its own descendants are ended after each step.')
        self.has_children_files = os.path.exists(f'/proc/{self.pid}/task/{self.pid}/children')
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except Exception:
            pass

    def end_all(self, notes):
        """Kills every process of the step and waits until they are gone (at most WAIT_SEC)."""
        if os.getpid() != self.pid:
            return  # a process forked by the user's code never cleans up for the runner
        deadline = time.monotonic() + WAIT_SEC
        while True:
            self._reap()
            alive = self._living_others() if self.kill_all else self._living_descendants()
            if not alive:
                # What died since the reap above is now a zombie of ours (the subreaper): reap it too, so
                # /proc shows nothing of the step once the result is written.
                self._reap()
                return
            if self.kill_all:
                _kill(-1)
            else:
                for pid in alive:
                    _kill(pid)
            if time.monotonic() > deadline:
                notes.append(f'{len(alive)} processes started by the step could not be ended.')
                return
            time.sleep(0.002)

    def _reap(self):
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except OSError:
                return
            if pid == 0:
                return

    def _living_descendants(self):
        if self.has_children_files:
            found, pending = set(), [self.pid]
            while pending:
                for child in _children_of(pending.pop()):
                    if child not in found:
                        found.add(child)
                        pending.append(child)
        else:
            found = _descendants_by_scan(self.pid)
        return [pid for pid in found if _state(pid) not in (None, 'Z', 'X')]

    def _living_others(self):
        uid = os.getuid()
        others = []
        for name in _proc_pids():
            pid = int(name)
            if pid in (1, self.pid):
                continue
            try:
                if os.stat(f'/proc/{name}').st_uid != uid:
                    continue
            except OSError:
                continue
            if _state(pid) not in (None, 'Z', 'X'):
                others.append(pid)
        return others


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _proc_pids():
    try:
        return [name for name in os.listdir('/proc') if name.isdigit()]
    except OSError:
        return []


def _children_of(pid):
    children = []
    try:
        tasks = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return children
    for task in tasks:
        try:
            with open(f'/proc/{pid}/task/{task}/children') as handle:
                children.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            pass
    return children


def _stat_fields(pid):
    """(state, parent pid) from /proc/<pid>/stat, or None. The command name may hold spaces and ')'."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rindex(b')') + 2:].split()
    return fields[0].decode(), int(fields[1])


def _state(pid):
    fields = _stat_fields(pid)
    return None if fields is None else fields[0]


def _descendants_by_scan(root):
    children = {}
    for name in _proc_pids():
        fields = _stat_fields(name)
        if fields is not None:
            children.setdefault(fields[1], []).append(int(name))
    found, pending = set(), [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found
