"""The one console helper: everything the CLI prints goes through here.

Rich reads `[...]` as style markup, so data (SQL, result cells, column headers, ids, paths, messages
that embed user input) is escaped with `esc` or passed as `Text`; only sqltune's own styling is
markup. Output that is not a terminal (a pipe, a file, a test) is never hard-wrapped.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

_out = Console(highlight=False)
_err = Console(stderr=True, highlight=False)


def esc(value) -> str:
    """`value` as text that rich prints literally."""
    return escape(str(value))


def _console(err: bool) -> Console:
    return _err if err else _out


def echo(markup: str = "", err: bool = False) -> None:
    """Print one message. `markup` is sqltune's own text: escape any data in it with `esc`."""
    c = _console(err)
    c.print(markup, soft_wrap=not c.is_terminal)


def show(renderable, err: bool = False) -> None:
    """Print a table (or other renderable); on a pipe or file, as wide as it needs to be."""
    c = _console(err)
    if c.is_terminal:
        c.print(renderable)
    else:
        width = max(80, c.measure(renderable, options=c.options.update(width=10_000)).maximum)
        old, c.width = c.width, width
        try:
            c.print(renderable)
        finally:
            c.width = old


def progress(total: int, desc: str | None = None, enabled: bool = True, **kw):
    """sqltune's progress bar (tqdm) on stderr, gone once closed. On a terminal a bar opened under another one (the
    evaluator's under the Trainer's, as training scores a checkpoint) takes the next line; elsewhere (a log file, a
    pipe) every bar stays on the one line (`position=0`), since the cursor moves between lines are escape codes
    ("\\x1b[A") that a file keeps, before the next line of the log."""
    import sys

    from tqdm.auto import tqdm

    file = sys.stderr
    try:
        terminal = file.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        terminal = False
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=file,
                position=None if terminal else 0, **kw)


def line_above_bars(text: str) -> None:
    """One line of a log on stderr while a progress bar may be open (the Trainer's, GRPO's): through `tqdm.write`, so
    on a terminal it goes above the bar, which is drawn again below it (a plain print lands on the bar's line), and in
    a log file it is a line of its own."""
    import sys

    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)
    sys.stderr.flush()


def table(columns, rows, title: str | None = None, **kw) -> Table:
    """A table whose title, headers and cells are data: a str cell is shown literally; pass a rich
    `Text` for a styled cell (see `mark`)."""
    t = Table(title=Text(title) if title else None, **kw)
    for col in columns:
        t.add_column(Text(str(col)))
    for row in rows:
        t.add_row(*(c if isinstance(c, Text) else Text("NULL" if c is None else str(c)) for c in row))
    return t


def mark(ok: bool) -> Text:
    return Text("✓", style="green") if ok else Text("✗", style="red")


def styled(text, style: str) -> Text:
    return Text(str(text), style=style)
