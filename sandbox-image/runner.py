"""Runs a thread's code (the wire format and the step protocol: docs/runner-protocol.md).

    runner.py --workspace DIR --step ID [--user UID:GID] [--own-pid-namespace]
    runner.py --workspace DIR --session [--user UID:GID] [--own-pid-namespace] [--limits JSON]

One-shot mode (`--step`) reads DIR/.oi/steps/ID/request.json (StepRequestFile in
controller/sandbox/sandbox.ts), runs the code like a notebook cell with DIR as working directory,
and writes DIR/.oi/steps/ID/result.json (RunnerResultFile: the field names mirror the TypeScript
type). Session mode (`--session`, runner_session.py) serves many steps of one thread over
stdin/stdout and keeps the Python globals in memory between them. The same runner serves the local
sandbox (plain process or bubblewrap) and the Cloud Run job.

Result (both modes): id, stdout, stderr, outputTruncated, error ({name, value, traceback} or null),
durationMs, figures, files ([{path, change, size}]), unsaved, notes, limit (only when a limit
stopped the step), restored, displays (runner_display). Every string and list is bounded by
runner_bounds, and every process the step started is gone before the result is written
(runner_processes).

Exit status: 0 whenever a result was written, including when the user's code raised (that is data);
non-zero only when the runner itself failed. Only the standard library is needed; dill (state of
functions and classes), matplotlib and pandas are used when present.
"""

import builtins
import json
import os
import sys
import traceback
import types

sys.dont_write_bytecode = True  # the runner's folder is read-only in a jail and part of the repository

import runner_bounds  # these sit beside this file (sys.path[0] is the runner's folder)
import runner_display
import runner_figures
import runner_limits
import runner_processes
import runner_state
import runner_step

USAGE = ('usage: runner.py --workspace DIR (--step ID | --session) [--user UID:GID] [--own-pid-namespace] '
         '[--limits JSON]')
VALUE_FLAGS = ('workspace', 'step', 'user', 'limits')
SWITCHES = ('session', 'own-pid-namespace')


class StdinNotAvailable(RuntimeError):
    """input() in a step: nobody can type an answer (the name follows Jupyter's StdinNotImplementedError)."""


def no_input(prompt=''):
    raise StdinNotAvailable('input() is not available: the code runs without a keyboard. '
                            'Put the values in the code instead.')


def parse_arguments(argv):
    """(argparse is not imported: it costs ~4 ms at every start.)"""
    if '--help' in argv or '-h' in argv:
        print(USAGE)
        raise SystemExit(0)
    values = {name: None for name in VALUE_FLAGS + SWITCHES}
    position = 0
    while position < len(argv):
        flag = argv[position]
        name = flag[2:] if flag.startswith('--') else None
        if name in SWITCHES:
            values[name] = True
            position += 1
        elif name in VALUE_FLAGS and position + 1 < len(argv):
            values[name] = argv[position + 1]
            position += 2
        else:
            raise SystemExit(f'unknown argument {flag!r}; {USAGE}')
    if values['workspace'] is None or (values['step'] is None) == (values['session'] is None):
        raise SystemExit(USAGE)
    if values['step'] is not None and not all(c.isalnum() or c in '-_' for c in values['step']):
        raise SystemExit(f'runner: invalid step id {values["step"]!r}')
    return types.SimpleNamespace(**{name.replace('-', '_'): value for name, value in values.items()})


def start(args):
    """What both modes share: enter the workspace, drop privileges, prepare the user's namespace."""
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
        runner_limits.drop_privileges(args.user)
    if not entered:
        os.chdir(workspace)
    # The way back into the workspace after the user's code changed directory: by path, the dropped
    # uid may not be allowed to traverse its parents. Not inherited by the programs the code starts.
    workspace_fd = os.open('.', os.O_RDONLY | os.O_DIRECTORY)
    runner_limits.workspace_fd = workspace_fd
    sys.path[0] = ''  # like a notebook: the user's own modules in the working directory are importable
    os.environ.setdefault('MPLBACKEND', 'Agg')
    # Keep a writable MPLCONFIGDIR the image prepared (its font cache is prebuilt; CJK fonts are slow
    # to index); otherwise use one inside the workspace so the cache survives between steps.
    configured = os.environ.get('MPLCONFIGDIR', '')
    if not (configured and os.path.isdir(configured) and os.access(configured, os.W_OK)):
        os.environ['MPLCONFIGDIR'] = os.path.join(workspace, runner_step.INTERNAL_DIR, 'matplotlib')
    runner_figures.install_pyplot_hook()
    runner_display.install()
    builtins.input = no_input
    signals = runner_limits.StepSignals()
    signals.install()
    environment = types.SimpleNamespace(
        workspace=workspace,
        workspace_fd=workspace_fd,
        signals=signals,
        processes=runner_processes.StepProcesses(args.own_pid_namespace),
    )
    module = types.ModuleType('__main__')
    module.__dict__['__builtins__'] = builtins
    sys.modules['__main__'] = module
    return environment, module.__dict__


def run_one_step(args, environment, namespace):
    step_dir = os.path.join(runner_step.INTERNAL_DIR, 'steps', args.step)
    with open(os.path.join(step_dir, 'request.json'), encoding='utf-8') as handle:
        request = json.load(handle)
    runner_limits.apply_one_shot_limits(request['limits'], os.path.join(step_dir, 'limit'))
    loaded = False

    def restore(notes):
        nonlocal loaded
        loaded = runner_state.restore(runner_step.STATE_PATH, namespace, notes)

    environment.signals.begin_step()
    # A controller that does not read `displays` yet ("displays": true absent) still gets each
    # table's compact text in stdout.
    result = runner_step.run_step(request, namespace, environment, prepare=restore,
                                  print_tables=request.get('displays') is not True)
    result['restored'] = 'checkpoint' if loaded else 'fresh'
    result_path = os.path.join(step_dir, 'result.json')
    temporary = result_path + '.tmp'
    with open(temporary, 'wb') as handle:
        handle.write(runner_bounds.fit_reply(result))
    os.replace(temporary, result_path)


def main():
    args = parse_arguments(sys.argv[1:])
    if args.session:
        import runner_session  # threads and queues: not for one-shot steps (before start() changes sys.path)
    environment, namespace = start(args)
    if args.session:
        runner_session.serve(environment, namespace, args.limits)
    else:
        run_one_step(args, environment, namespace)


if __name__ == '__main__':
    try:
        main()
    except BaseException:  # the runner itself failed: say why on stderr, exit non-zero
        message = traceback.format_exc()
        # In session mode fd 2 points at /dev/null; the session kept the original stderr.
        fd = getattr(sys.modules.get('runner_session'), 'diagnostics_fd', 2)
        try:
            os.write(fd, message.encode('utf-8', 'backslashreplace'))
        except OSError:
            pass
        os._exit(2)
    # Not sys.exit: threads the user's code left running must not keep the runner alive.
    os._exit(0)
