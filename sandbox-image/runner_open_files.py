"""Files the user's code left open for writing, flushed after each step of a session (issue 13).

A session's runner outlives its steps, so a file the code opened and did not close (`log =
open('log.txt', 'w')` kept in a global) stays open between steps. On Cloud Run the workspace is a
gcsfuse mount, which writes a file to GCS when it is closed, not before: the object would be missing
or stale while the controller already reads the step's files from GCS. So after each step of a
session, for every regular file of the workspace this process holds open for writing:

1. Python's own buffer of it is flushed (what `write()` keeps in user space until then);
2. a duplicate of its descriptor is closed. The kernel sends a FUSE FLUSH on every close(2) of a
   descriptor, and gcsfuse answers FLUSH by writing the file to GCS (a streaming write is finalized,
   later writes go on through a staged upload): gcsfuse 3.11.2 internal/fs/fs.go FlushFile ->
   FileInode.Flush; https://github.com/GoogleCloudPlatform/gcsfuse/blob/master/docs/semantics.md
   ("Writes": data is on GCS once the file is closed; fsync does not finalize a streaming write).

The code keeps its file open at the same offset. On a local disk both steps are harmless. Processes
the step started are gone before this runs (their descriptors closed by the kernel, which flushes
them the same way), so only the runner's own descriptors are left.
"""

import fcntl
import gc
import io
import os
import stat

INTERNAL_DIR = '.oi'


def flush_open_files(workspace):
    """Flushes and FUSE-flushes the workspace files this process holds open for writing."""
    descriptors = writable_descriptors(workspace)
    if not descriptors:
        return
    # Only when such a file exists: walking every object costs tens of milliseconds with pandas loaded.
    for candidate in gc.get_objects():
        _flush_python_buffer(candidate, descriptors)
    for fd in descriptors:
        try:
            os.close(os.dup(fd))
        except OSError:  # out of descriptors, or closed meanwhile by a thread of the code
            pass


def writable_descriptors(workspace):
    """Descriptors of this process open for writing on regular files under workspace (not .oi/)."""
    root = os.path.realpath(workspace)
    internal = os.path.join(root, INTERNAL_DIR) + os.sep
    found = set()
    try:
        names = os.listdir('/proc/self/fd')
    except OSError:
        return found
    for name in names:
        try:
            fd = int(name)
            target = os.readlink(f'/proc/self/fd/{fd}')
            if not target.startswith(root + os.sep) or target.startswith(internal):
                continue
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                continue
            if stat.S_ISREG(os.fstat(fd).st_mode):
                found.add(fd)
        except (OSError, ValueError):  # the descriptor of the listing itself, or one closed meanwhile
            continue
    return found


def _flush_python_buffer(candidate, descriptors):
    try:
        if isinstance(candidate, io.IOBase) and not candidate.closed and candidate.fileno() in descriptors:
            candidate.flush()
    except Exception:  # a file object of the code's own making may raise anything here
        pass
