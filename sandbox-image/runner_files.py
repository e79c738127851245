"""Which files of the workspace a step created, modified or deleted (never .oi/, never through symlinks)."""

import os
import stat

import runner_bounds

INTERNAL_DIR = '.oi'


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


def compare(before, after, notes):
    """The changes, sorted by path, at most MAX_FILES of them; a note says how many were left out."""
    changes = []
    left_out = 0
    for path in sorted(set(before) | set(after)):
        if path not in before:
            change = {'path': path, 'change': 'created', 'size': after[path][0]}
        elif path not in after:
            change = {'path': path, 'change': 'deleted', 'size': 0}
        elif before[path] != after[path]:
            change = {'path': path, 'change': 'modified', 'size': after[path][0]}
        else:
            continue
        if len(changes) >= runner_bounds.MAX_FILES or len(path) > runner_bounds.MAX_PATH_CHARS:
            left_out += 1
        else:
            changes.append(change)
    if left_out:
        notes.append(f'{left_out} more changed files are not listed (at most {runner_bounds.MAX_FILES} are listed, '
                     f'paths of at most {runner_bounds.MAX_PATH_CHARS} characters).')
    return changes
