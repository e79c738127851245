"""Python state that survives between steps of one thread (issue 5), stored in the thread's `.oi/state.pkl`.

Every save also writes a new random checkpoint stamp to `.oi/state.stamp`. A session keeps the
stamp it wrote last; before a step it compares it with the file: a different stamp means another
runner (another session, a one-shot step, another controller instance) wrote the checkpoint since,
and the session reloads it instead of trusting its memory.

Each global name is saved on its own so one unpicklable value never loses the others: modules are
recorded by name and re-imported, other values are pickled with the standard pickle when it can do
it without referring to `__main__` (fast, and loading needs nothing but the libraries of the value),
else with dill (functions, classes and lambdas defined in the steps). What can be saved by neither
is reported as unsaved. Values are pickled one by one, so two names that shared one object get a
copy each after a restore.
"""

import io
import os
import pickle
import sys
import types

FORMAT_VERSION = 1
SKIPPED_NAMES = frozenset({
    '__builtins__', '__name__', '__doc__', '__spec__', '__loader__', '__package__', '__file__', '__cached__',
    '__annotations__',
})


class _NeedsDill(Exception):
    pass


class _PlainPickler(pickle.Pickler):
    """The standard pickler, refusing what only resolves in this process (definitions in `__main__`)."""

    def reducer_override(self, obj):
        if getattr(obj, '__module__', None) == '__main__' and isinstance(obj, (type, types.FunctionType)):
            raise _NeedsDill()
        if isinstance(obj, types.FunctionType) and obj.__name__ == '<lambda>':
            raise _NeedsDill()
        return NotImplemented


def _plain_dumps(value):
    buffer = io.BytesIO()
    _PlainPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _dill():
    import dill  # imported only when needed: it costs tens of milliseconds
    return dill


def _serialize(value):
    """('pickle' | 'dill', bytes), or None when the value cannot be saved."""
    if isinstance(value, (io.IOBase, types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
        return None  # open files would be reopened (and truncated) by dill; generators cannot be resumed
    try:
        return 'pickle', _plain_dumps(value)
    except Exception:
        pass
    try:
        dill = _dill()
    except ImportError:
        return None
    try:
        data = dill.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        dill.loads(data)  # some objects pickle fine and only fail on load (e.g. half-initialised ones)
        return 'dill', data
    except Exception:
        return None


def stamp_path(path):
    return os.path.join(os.path.dirname(path), 'state.stamp')


def read_stamp(path):
    """The checkpoint stamp beside the state file at path, or None when there is none."""
    try:
        with open(stamp_path(path), encoding='ascii') as handle:
            return handle.read(64).strip() or None
    except (OSError, ValueError):
        return None


def _write_stamp(path):
    stamp = os.urandom(16).hex()  # not `secrets`: it imports hashlib/OpenSSL, ~25 ms at every start
    temporary = stamp_path(path) + '.tmp'
    try:
        with open(temporary, 'w', encoding='ascii') as handle:
            handle.write(stamp)
        os.replace(temporary, stamp_path(path))
    except OSError:
        _remove(temporary)
        return None
    return stamp


def clear(namespace):
    """Removes the user's globals (before a reload from the checkpoint)."""
    for name in list(namespace):
        if name not in SKIPPED_NAMES:
            del namespace[name]


def save(path, namespace, notes):
    """Saves the picklable globals and a new stamp; returns the sorted names that could not be saved.
    The stamp written is then in `last_stamp`."""
    global last_stamp
    unsaved = _save(path, namespace, notes)
    last_stamp = _write_stamp(path)
    return unsaved


last_stamp = None


def _save(path, namespace, notes):
    modules, values, unsaved = {}, {}, []
    for name, value in list(namespace.items()):
        if name in SKIPPED_NAMES:
            continue
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
            continue
        try:
            serialized = _serialize(value)
        except BaseException:  # a __reduce__ of the user's may raise anything; never fail the step
            serialized = None
        if serialized is None:
            unsaved.append(name)
        else:
            values[name] = serialized
    if not modules and not values:
        _remove(path)
        return sorted(unsaved)
    state = {'format': FORMAT_VERSION, 'python': list(sys.version_info[:2]), 'modules': modules, 'values': values}
    temporary = path + '.tmp'
    try:
        with open(temporary, 'wb') as handle:
            pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
    except OSError as exc:
        _remove(temporary)
        notes.append(f'The Python state could not be saved for the next step ({exc.strerror or exc}).')
        return sorted(set(unsaved) | set(values))
    return sorted(unsaved)


def restore(path, namespace, notes):
    """Loads saved globals into namespace; True when a checkpoint was there. A state that cannot be
    loaded is dropped with a note."""
    try:
        with open(path, 'rb') as handle:
            state = pickle.load(handle)
        if not isinstance(state, dict) or state.get('format') != FORMAT_VERSION:
            raise ValueError('unknown format')
        if state.get('python') != list(sys.version_info[:2]):
            raise ValueError(f'saved by Python {".".join(map(str, state.get("python") or []))}')
        modules, values = state['modules'], state['values']
    except FileNotFoundError:
        return False
    except Exception as exc:
        _remove(path)
        notes.append(f'The saved Python state could not be loaded and was dropped ({exc}); '
                     'variables from earlier steps must be recreated.')
        return False
    failed = []
    for name, module_name in modules.items():
        try:
            __import__(module_name)
            namespace[name] = sys.modules[module_name]
        except BaseException:  # an import may raise anything, SystemExit included
            failed.append(name)
    for name, (kind, data) in values.items():
        try:
            namespace[name] = pickle.loads(data) if kind == 'pickle' else _dill().loads(data)
        except BaseException:
            failed.append(name)
    if failed:
        shown = sorted(failed)
        notes.append('These names from earlier steps could not be restored and must be recreated: '
                     + ', '.join(name[:100] for name in shown[:50]) + (f' and {len(shown) - 50} more' if len(shown) > 50 else '') + '.')
    return True


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass
