"""matplotlib support for the runner: `plt.show()` saves figures as PNGs in the workspace.

matplotlib is never imported by the runner itself (it costs a second on a cold start): an import
hook patches `matplotlib.pyplot` when the user's code (or a restored state) imports it.
"""

import importlib.machinery
import os
import sys

# Fonts that can draw Japanese/Chinese/Korean text, used as fallbacks after the default font.
CJK_FONTS = ('Noto Sans CJK JP', 'Noto Sans JP', 'IPAexGothic', 'IPAGothic', 'TakaoGothic', 'VL Gothic',
             'WenQuanYi Zen Hei', 'Source Han Sans JP', 'Droid Sans Fallback')

saved_figures = []


class _PyplotHook:
    """A meta path finder (importlib.abc is not imported: it costs ~9 ms at every start)."""

    def find_spec(self, name, path, target=None):
        if name != 'matplotlib.pyplot':
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


def install_pyplot_hook():
    if 'matplotlib.pyplot' in sys.modules:
        _patch(sys.modules['matplotlib.pyplot'])
    else:
        sys.meta_path.insert(0, _PyplotHook())


def _patch(pyplot):
    def show(*args, **kwargs):
        _save_all(pyplot)

    show.__doc__ = 'Saves every open figure as figure_N.png in the working directory, then closes it.'
    pyplot.show = show
    try:
        _add_cjk_fallback(pyplot)
    except Exception:
        pass


def _add_cjk_fallback(pyplot):
    from matplotlib import font_manager
    available = {font.name for font in font_manager.fontManager.ttflist}
    fallbacks = [name for name in CJK_FONTS if name in available]
    if fallbacks:
        families = list(pyplot.rcParams['font.family'])
        if families == ['sans-serif']:
            families = list(pyplot.rcParams['font.sans-serif'][:1])
        pyplot.rcParams['font.family'] = families + fallbacks[:1]


def _next_free_name():
    number = 1
    while os.path.lexists(f'figure_{number}.png'):
        number += 1
    return f'figure_{number}.png'


def _save_all(pyplot):
    for number in list(pyplot.get_fignums()):
        figure = pyplot.figure(number)
        name = _next_free_name()
        try:
            figure.savefig(name, format='png', dpi=100, bbox_inches='tight')
            saved_figures.append(name)
        finally:
            pyplot.close(figure)


def save_open_figures(notes):
    """Saves figures still open at the end of the step; returns every PNG saved during the step (a
    session runs many steps: the list starts empty again for the next one)."""
    pyplot = sys.modules.get('matplotlib.pyplot')
    if pyplot is not None:
        try:
            _save_all(pyplot)
        except Exception as exc:
            notes.append(f'An open figure could not be saved as PNG ({type(exc).__name__}: {exc}).')
    saved = list(saved_figures)
    saved_figures.clear()
    return saved
