"""Displays (issue 16): Jupyter's Out/display semantics for tables.

When the last expression of a step, or an object passed to `display()` (a builtin in the user's
namespace, as in Jupyter), is a pandas DataFrame or Series, the step's reply gets a table entry:

    {"kind": "table", "columns": [...], "indexColumns": k, "rows": [[...], ...], "totalRows": n,
     "totalColumns": m, "text": "compact rendering for the model", "csv": ".oi/displays/<step>/<n>.csv"}

`columns` and each row hold strings formatted as pandas shows them: first the index level(s) when the
index is not the default 0..n-1 (`indexColumns` says how many), then at most the first data columns;
`totalRows` / `totalColumns` count the whole frame's rows and data columns. `csv` (the whole frame,
index included when shown) is present only when the frame is larger than what `rows` carry or a cell
was cut; it is valid until the next step of the thread starts. Caps: runner_bounds (TABLE_*).

Other objects: display() prints their repr, like a notebook. pandas is never imported here: a value
can only be a DataFrame when the user's code imported pandas already.
"""

import builtins
import os
import sys

import runner_bounds

DISPLAYS_DIR = os.path.join('.oi', 'displays')

current = None  # the Displays of the running step; None between steps


def display(*objects, **options):
    """Shows each object: a DataFrame or Series as a table in the thread, anything else as its repr."""
    for value in objects:
        if current is None or not current.show(value):
            print(repr(value))


def install():
    builtins.display = display


def is_table(value):
    pandas = sys.modules.get('pandas')
    return pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series))


class Displays:
    """The tables of one step. print_text: also print each table's compact text to stdout (for a
    controller that does not read displays yet: one-shot requests without `"displays": true`)."""

    def __init__(self, step_id, notes, print_text=False):
        self.step_id = step_id
        self.notes = notes
        self.print_text = print_text
        self.entries = []
        self.left_out = 0

    def __enter__(self):
        global current
        remove_old_displays(self.step_id)
        current = self
        return self

    def __exit__(self, *exc_info):
        global current
        current = None
        return False

    def show(self, value):
        """Adds value as a table and returns True, or returns False when it is not a table."""
        if not is_table(value):
            return False
        if len(self.entries) >= runner_bounds.MAX_DISPLAYS:
            self.left_out += 1
            print(runner_bounds.bound_text(repr(value), runner_bounds.TABLE_MAX_TEXT_CHARS))
            return True
        try:
            entry = table_entry(value, self.step_id, len(self.entries) + 1, self.notes)
        except Exception as exc:  # a frame pandas cannot format: show what a notebook would
            self.notes.append(f'A table could not be prepared for display ({type(exc).__name__}: {exc}).')
            return False
        self.entries.append(entry)
        if self.print_text:
            print(entry['text'])
        return True

    def result(self):
        if self.left_out:
            self.notes.append(f'{self.left_out} more tables were printed instead of displayed '
                              f'(at most {runner_bounds.MAX_DISPLAYS} tables per step).')
        return self.entries


def remove_old_displays(step_id):
    """CSV files of earlier steps: the controller has read them before it sends the next step."""
    try:
        names = os.listdir(DISPLAYS_DIR)
    except OSError:
        return
    import shutil  # only when there is something to remove: it costs ~4 ms at every start
    for name in names:
        if name != step_id:
            shutil.rmtree(os.path.join(DISPLAYS_DIR, name), ignore_errors=True)


def table_entry(value, step_id, number, notes):
    import pandas  # already imported by the user's code (is_table checked it)
    frame = value.to_frame() if isinstance(value, pandas.Series) else value
    if isinstance(value, pandas.Series) and value.name is None:
        frame.columns = ['']
    total_rows, total_columns = frame.shape
    show_index = not _is_default_index(frame.index, pandas)
    index_levels = frame.index.nlevels if show_index else 0
    data_columns = max(min(total_columns, runner_bounds.TABLE_MAX_COLUMNS - index_levels), 0)
    shown = frame.iloc[:runner_bounds.TABLE_MAX_ROWS, :data_columns]

    headers, columns_text = [], []
    # pandas cuts text longer than display.max_colwidth to max_colwidth - 3 characters and '...': a
    # little more than ours, so that a cut cell is longer than TABLE_MAX_CELL_CHARS and cut by _cut.
    with pandas.option_context('display.max_colwidth', runner_bounds.TABLE_MAX_CELL_CHARS + 4):
        for level in range(index_levels):
            name = frame.index.names[level]
            headers.append('' if name is None else _label(name))
            columns_text.append(_format_column(shown.index.get_level_values(level)))
        for position in range(data_columns):
            headers.append(_label(shown.columns[position]))
            columns_text.append(_format_column(shown.iloc[:, position]))

    limit = runner_bounds.TABLE_MAX_CELL_CHARS
    cut = any(len(header) > limit for header in headers) or any(len(cell) > limit for cells in columns_text for cell in cells)
    rows = [[_cut(cells[row]) for cells in columns_text] for row in range(len(shown))]
    entry = {
        'kind': 'table',
        'columns': [_cut(header) for header in headers],
        'indexColumns': index_levels,
        'rows': rows,
        'totalRows': int(total_rows),
        'totalColumns': int(total_columns),
        'text': _text(frame, pandas),
    }
    if cut or total_rows > len(shown) or total_columns > data_columns:
        path = _write_csv(frame, show_index, step_id, number, notes)
        if path is not None:
            entry['csv'] = path
    return entry


def _is_default_index(index, pandas):
    return (isinstance(index, pandas.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None)


def _label(label):
    if isinstance(label, tuple):
        return ' / '.join(str(part) for part in label)
    return str(label)


def _cut(text):
    limit = runner_bounds.TABLE_MAX_CELL_CHARS
    return text if len(text) <= limit else text[:limit - 1] + '…'


def _format_column(column):
    """Cells as pandas prints them (same precision, NaN, dates). format_array is pandas' own formatter
    of a column (pandas.io.formats.format, used by every repr since pandas 0.x); str() when it fails."""
    values = getattr(column, '_values', column)
    try:
        from pandas.io.formats.format import format_array
        cells = format_array(values, None, leading_space=False)
        return [cell.strip() for cell in cells]
    except Exception:
        return [str(cell) for cell in list(column)]


def _text(frame, pandas):
    with pandas.option_context('display.max_colwidth', 40, 'display.width', 160):
        text = frame.to_string(max_rows=runner_bounds.TABLE_TEXT_ROWS, max_cols=runner_bounds.TABLE_TEXT_COLUMNS,
                               show_dimensions=True)
    return runner_bounds.bound_text(text, runner_bounds.TABLE_MAX_TEXT_CHARS, head_share=0.75)


def _write_csv(frame, show_index, step_id, number, notes):
    folder = os.path.join(DISPLAYS_DIR, step_id)
    path = os.path.join(folder, f'{number}.csv')
    rows = len(frame)
    if rows > runner_bounds.TABLE_MAX_CSV_ROWS:
        frame = frame.iloc[:runner_bounds.TABLE_MAX_CSV_ROWS]
        notes.append(f'Table {number} has {rows} rows; its CSV holds the first {runner_bounds.TABLE_MAX_CSV_ROWS}.')
    try:
        os.makedirs(folder, exist_ok=True)
        frame.to_csv(path, index=show_index)
    except Exception as exc:  # disk full, file size limit
        notes.append(f'Table {number} could not be saved as CSV ({type(exc).__name__}: {exc}).')
        try:
            os.unlink(path)
        except OSError:
            pass
        return None
    return path
