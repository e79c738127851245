"""The step's stdout and stderr: captured to files at the file-descriptor level, read back bounded."""

import codecs
import io
import os
import sys


class CapturedOutput:
    """Points fds 1 and 2 at `.oi/steps/<id>/stdout.log` and `stderr.log` for the step, so output of
    child processes (os.system, subprocess) is kept too; restores whatever they were before (the
    session's /dev/null) on exit."""

    def __init__(self, step_dir):
        self.paths = (os.path.join(step_dir, 'stdout.log'), os.path.join(step_dir, 'stderr.log'))

    def __enter__(self):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
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
                return handle.read(max_bytes).decode('utf-8', 'replace'), False
            head = handle.read(max_bytes // 2)
            handle.seek(size - (max_bytes - len(head)))
            tail = handle.read(max_bytes - len(head))
    except OSError:
        return '', False
    cut = size - len(head) - len(tail)
    note = f'\n[... {cut} bytes of output cut ...]\n'
    # Cutting may split a UTF-8 character: drop the broken halves rather than show replacement marks.
    head_text = codecs.getincrementaldecoder('utf-8')('replace').decode(head, final=False)
    tail_text = tail.lstrip(bytes(range(0x80, 0xC0))).decode('utf-8', 'replace')
    return head_text + note + tail_text, True
