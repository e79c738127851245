"""One step, the same in both modes: run the code like a notebook cell, end its processes, list the
files it changed, save the Python state, and build the bounded result (RunnerResultFile fields)."""

import ast
import linecache
import os
import time
import traceback

import runner_bounds
import runner_display
import runner_figures
import runner_files
import runner_limits
import runner_open_files
import runner_output
import runner_state

INTERNAL_DIR = runner_files.INTERNAL_DIR
STATE_PATH = os.path.join(INTERNAL_DIR, 'state.pkl')
RUNNER_DIR = os.path.dirname(os.path.abspath(__file__))
RUNNER_PID = os.getpid()


def run_step(request, namespace, environment, prepare=None, cpu_budget=None, print_tables=False, flush_open_files=False):
    """Runs request['code'] in namespace; returns the result dict (without `restored`). The caller
    has called environment.signals.begin_step().

    environment: .workspace (absolute path), .workspace_fd (its folder, open), .signals (StepSignals),
    .processes (StepProcesses).
    prepare(notes): called before the code runs, inside the output capture (restores the state).
    cpu_budget: a SessionCpuBudget in session mode; one-shot mode relies on RLIMIT_CPU.
    flush_open_files: session mode, where files the code left open outlive the step (runner_open_files).
    """
    step_id = request['id']
    step_dir = os.path.join(INTERNAL_DIR, 'steps', step_id)
    for folder in (INTERNAL_DIR, os.path.dirname(step_dir), step_dir):
        _ensure_real_directory(folder)
    limits = request['limits']
    timeout_sec = request.get('timeoutSec', 0)
    max_output = min(int(request.get('maxOutputBytes', runner_bounds.DEFAULT_OUTPUT_BYTES)), runner_bounds.MAX_OUTPUT_BYTES)
    started = time.monotonic()
    notes = []
    before = runner_files.snapshot('.')
    error, limit = None, None
    output = runner_output.CapturedOutput(step_dir)
    with output, runner_display.Displays(step_id, notes, print_tables) as displays:
        if prepare is not None:
            try:
                prepare(notes)
            except BaseException as exc:  # a saved value's __reduce__ may raise anything
                notes.append(f'The saved Python state could not be loaded ({type(exc).__name__}).')
        failure = execute_code(request['code'], namespace, environment, step_id, limits, timeout_sec, cpu_budget)
        enter_workspace(environment)  # the code may have changed directory; everything below is relative
        environment.processes.end_all(notes)
        if failure is not None:
            error, limit = describe_failure(failure, limits, timeout_sec)
        figures = runner_figures.save_open_figures(notes)
        unsaved = runner_state.save(STATE_PATH, namespace, notes)
        tables = displays.result()
    environment.signals.end_step()
    stdout, stderr, truncated = output.read(max_output)
    if flush_open_files:
        runner_open_files.flush_open_files(environment.workspace)
    files = runner_files.compare(before, runner_files.snapshot('.'), notes)
    _remove_step_folder(step_dir)
    result = {
        'id': step_id,
        'stdout': stdout,
        'stderr': stderr,
        'outputTruncated': truncated,
        'error': runner_bounds.bound_error(error),
        'durationMs': int((time.monotonic() - started) * 1000),
        'figures': _bounded_figures(figures, notes),
        'files': files,
        'unsaved': _bounded_names(unsaved, notes),
        'notes': [],
        'displays': tables,
    }
    if limit is not None:
        result['limit'] = limit
    result['notes'] = runner_bounds.bound_notes(notes)
    return result


def execute_code(code, namespace, environment, step_id, limits, timeout_sec, cpu_budget):
    """Runs the user's code with the step's signals armed; returns the exception it ended with, or None.

    A Stop or timeout can arrive at any point until the signals are disarmed, also while the runner
    records an exception: each such late exception replaces the first, and disarming is retried.
    """
    failure = None
    marker_path = os.path.join(INTERNAL_DIR, 'steps', step_id, 'limit')
    enter_workspace(environment)
    try:
        if cpu_budget is not None:
            cpu_budget.start(limits['cpuSec'])
        environment.signals.arm(marker_path, timeout_sec, limits['cpuSec'] if cpu_budget is not None else None)
        run_cell(code, namespace, f'<step {step_id[:8]}>')
    except BaseException as exc:  # the user's code failing is data, whatever it raised
        failure = exc
    while True:
        try:
            environment.signals.disarm()
            break
        except BaseException as late:  # a signal handled just before `armed` was cleared
            failure = late
    if os.getpid() != RUNNER_PID:
        # A process forked by the user's code ran off the end of the cell: it must not go on as the runner.
        os._exit(0 if failure is None else 1)
    if cpu_budget is not None:
        cpu_budget.end()
    if isinstance(failure, SystemExit) and failure.code in (None, 0):
        failure = None
    return failure


def enter_workspace(environment):
    try:
        os.fchdir(environment.workspace_fd)
    except OSError:  # the user's code closed the descriptor
        os.chdir(environment.workspace)


def run_cell(code, namespace, filename):
    """Runs code like a notebook cell: the value of a last expression is displayed (a table) or its repr printed."""
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    tree = ast.parse(code, filename, 'exec')
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, 'exec'), namespace)
    if last is not None:
        value = eval(compile(last, filename, 'eval'), namespace)
        if value is not None:
            shown = runner_display.current is not None and runner_display.current.show(value)
            if not shown:
                print(repr(value))


def describe_failure(exc, limits, timeout_sec):
    """(error, limit kind or None) for the exception the step ended with."""
    try:
        error = describe_error(exc)
    except BaseException as problem:  # a __str__ of the user's that fails or exhausts memory
        error = {'name': type(exc).__name__, 'value': f'<the error could not be described: {type(problem).__name__}>',
                 'traceback': ''}
    if isinstance(exc, KeyboardInterrupt) and not error['value']:
        error['value'] = 'The step was stopped (Stop).'
    described = runner_limits.describe_limit(exc, limits, timeout_sec)
    if described is None:
        return error, None
    limit, message = described
    error['value'] = message + (f' ({error["value"]})' if error['value'] else '')
    return error, limit


def describe_error(exc):
    """The error with a traceback of the user's code only (the runner's own frames are left out).
    The message is bounded before it is copied around: it may be 20 MB."""
    summary = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    seen = set()
    pending = [summary]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = traceback.StackSummary.from_list(
            [frame for frame in current.stack if not _is_runner_file(frame.filename)])
        pending.extend((current.__cause__, current.__context__))
    text = runner_bounds.bound_text(''.join(summary.format()), runner_bounds.MAX_TRACEBACK_CHARS, head_share=0.25)
    try:
        value = str(exc)
    except BaseException:
        value = '<exception str() failed>'
    return {'name': type(exc).__name__, 'value': runner_bounds.bound_text(value, runner_bounds.MAX_ERROR_VALUE_CHARS),
            'traceback': text}


def _is_runner_file(filename):
    return os.path.dirname(filename) == RUNNER_DIR and os.path.basename(filename).startswith('runner')


def _bounded_figures(figures, notes):
    kept, note = runner_bounds.bound_list(
        figures, runner_bounds.MAX_FIGURES, lambda count: f'{count} more figures were saved and are not listed.')
    if note:
        notes.append(note)
    return kept


def _bounded_names(names, notes):
    cut = [runner_bounds.bound_text(name, runner_bounds.MAX_NAME_CHARS) for name in names[:runner_bounds.MAX_UNSAVED + 1]]
    kept, note = runner_bounds.bound_list(
        cut, runner_bounds.MAX_UNSAVED,
        lambda count: f'{len(names) - runner_bounds.MAX_UNSAVED} more names could not be saved and are not listed.')
    if note:
        notes.append(note)
    return kept


def _ensure_real_directory(path):
    """The code of an earlier step may have put a file or a symlink where a runner folder belongs (as
    the controller does for one-shot steps, it is replaced rather than followed or failed on)."""
    if os.path.isdir(path) and not os.path.islink(path):
        return
    if os.path.lexists(path):
        os.unlink(path)
    os.mkdir(path, 0o700)


def _remove_step_folder(step_dir):
    """The capture files are read; the folder goes unless the controller left files in it (one-shot)."""
    for name in ('limit',):
        try:
            os.unlink(os.path.join(step_dir, name))
        except OSError:
            pass
    try:
        os.rmdir(step_dir)
    except OSError:
        pass

