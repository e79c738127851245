"""Every cap on what the runner returns, in one place (issue 14: everything the sandbox returns is hostile input).

The user's code runs in the runner's own process, so these caps are a courtesy that keeps honest
results small; the controller validates and bounds the result again. A whole reply (one JSON line in
session mode, result.json in one-shot mode) stays under MAX_REPLY_BYTES: `fit_reply` shrinks the
largest fields until it does. docs/runner-protocol.md lists the same numbers.
"""

import json

MIB = 1024 * 1024

# A whole reply line / result file, UTF-8 encoded. The controller refuses anything larger.
MAX_REPLY_BYTES = 1 * MIB
# stdout and stderr: each keeps maxOutputBytes (head and tail), at most this many, whatever the request says.
MAX_OUTPUT_BYTES = 256 * 1024
DEFAULT_OUTPUT_BYTES = 100_000

# error.value (the exception's message) and error.traceback, in characters; head and tail kept.
MAX_ERROR_NAME_CHARS = 200
MAX_ERROR_VALUE_CHARS = 4_000
MAX_TRACEBACK_CHARS = 20_000

# notes: at most MAX_NOTES, each at most MAX_NOTE_CHARS.
MAX_NOTES = 20
MAX_NOTE_CHARS = 1_000

# files changed: at most MAX_FILES entries; a path longer than MAX_PATH_CHARS is left out (a cut path
# would name another file), and a note says how many entries were left out.
MAX_FILES = 1_000
MAX_PATH_CHARS = 1_024

# figures (PNG paths) and unsaved global names.
MAX_FIGURES = 50
MAX_UNSAVED = 100
MAX_NAME_CHARS = 200

# displays (issue 16): tables per step, and per table the rows and columns carried, the length of one
# cell (and of a column name), the compact text rendering for the model, the rows of the CSV file.
MAX_DISPLAYS = 10
TABLE_MAX_ROWS = 50
TABLE_MAX_COLUMNS = 20
TABLE_MAX_CELL_CHARS = 100
TABLE_TEXT_ROWS = 20
TABLE_TEXT_COLUMNS = 12
TABLE_MAX_TEXT_CHARS = 4_000
TABLE_MAX_CSV_ROWS = 1_000_000


def bound_text(text, limit, head_share=0.5):
    """text when it fits in limit characters, else its head and tail with a note of what was cut."""
    if not isinstance(text, str):
        text = str(text)
    if len(text) <= limit:
        return text
    note_room = 48
    keep = max(limit - note_room, 0)
    head = int(keep * head_share)
    tail = keep - head
    cut = len(text) - head - tail
    return text[:head] + f'\n[... {cut} characters cut ...]\n' + (text[len(text) - tail:] if tail else '')


def bound_list(items, limit, describe_rest):
    """(the first `limit` items, a note about the rest or None). describe_rest(count) words the note."""
    if len(items) <= limit:
        return list(items), None
    return list(items[:limit]), describe_rest(len(items) - limit)


def bound_notes(notes):
    """At most MAX_NOTES notes of at most MAX_NOTE_CHARS each; the last one says how many were left out."""
    bounded = [bound_text(note, MAX_NOTE_CHARS) for note in notes]
    if len(bounded) <= MAX_NOTES:
        return bounded
    return bounded[:MAX_NOTES - 1] + [f'{len(bounded) - MAX_NOTES + 1} more notes were left out.']


def bound_error(error):
    if error is None:
        return None
    return {
        'name': bound_text(error['name'], MAX_ERROR_NAME_CHARS),
        'value': bound_text(error['value'], MAX_ERROR_VALUE_CHARS),
        # The end of a traceback holds the failing line and the message: keep more of it.
        'traceback': bound_text(error['traceback'], MAX_TRACEBACK_CHARS, head_share=0.25),
    }


def encode_reply(reply):
    """One line of UTF-8 JSON (no newline). A file name that is not UTF-8 reaches here as lone
    surrogates (os.fsdecode): backslashreplace turns them into JSON \\udcXX escapes, not a crash."""
    return json.dumps(reply, ensure_ascii=False, separators=(',', ':')).encode('utf-8', 'backslashreplace')


def fit_reply(reply):
    """Returns the encoded reply, shrinking its largest parts until it fits MAX_REPLY_BYTES.

    The caps above keep ordinary results far below the limit; this is the last guard for the sum of
    them (JSON escapes can make control characters six times longer). Shrinking halves, in turn,
    whichever of stdout, stderr, traceback, files, displays is largest.
    """
    encoded = encode_reply(reply)
    shrunk = False
    for _ in range(64):
        if len(encoded) <= MAX_REPLY_BYTES:
            break
        shrunk = True
        sizes = {
            'stdout': len(reply.get('stdout', '')),
            'stderr': len(reply.get('stderr', '')),
            'traceback': len((reply.get('error') or {}).get('traceback', '')),
            'files': sum(len(entry['path']) + 50 for entry in reply.get('files', [])),
            'displays': len(json.dumps(reply.get('displays', []), ensure_ascii=False)),
        }
        largest = max(sizes, key=sizes.get)
        if sizes[largest] == 0:
            reply['notes'] = reply.get('notes', [])[:1]
            reply['unsaved'] = reply.get('unsaved', [])[:10]
        elif largest in ('stdout', 'stderr'):
            reply[largest] = bound_text(reply[largest], len(reply[largest]) // 2)
            reply['outputTruncated'] = True
        elif largest == 'traceback':
            reply['error']['traceback'] = bound_text(reply['error']['traceback'], sizes['traceback'] // 2, 0.25)
        elif largest == 'files':
            reply['files'] = reply['files'][:len(reply['files']) // 2]
        else:
            reply['displays'] = _halve_displays(reply['displays'])
        encoded = encode_reply(reply)
    if shrunk:
        reply['notes'] = (reply.get('notes') or [])[:MAX_NOTES - 1] + [
            'The result was too large and was shortened (output, file list or tables cut).']
        encoded = encode_reply(reply)
    return encoded


def _halve_displays(displays):
    if not displays:
        return displays
    biggest = max(range(len(displays)), key=lambda index: len(json.dumps(displays[index], ensure_ascii=False)))
    entry = dict(displays[biggest])
    if len(entry.get('rows', [])) > 1:
        entry['rows'] = entry['rows'][:len(entry['rows']) // 2]
        entry['text'] = bound_text(entry.get('text', ''), max(len(entry.get('text', '')) // 2, 200))
        displays = displays[:biggest] + [entry] + displays[biggest + 1:]
    else:
        displays = displays[:biggest] + displays[biggest + 1:]
    return displays
