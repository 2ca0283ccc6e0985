"""Tables that fit the terminal: a table is a list of columns, each a header, a cell function and a priority; the
columns that do not fit the width are left out, least important first (what they show is in the details below the
table). An engine or a command adds a column by adding a :class:`Column`, never by editing rows.
"""
from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Sequence

MIN_WIDTH = 80
DEFAULT_WIDTH = 100  # output that is not a terminal (a pipe, a file), unless COLUMNS says otherwise


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[object], str]  # plain text of one row's cell
    priority: int = 0  # 0: always shown; higher numbers are left out first when the table is too wide
    justify: str = "left"
    style: Callable[[object], str] | None = None  # rich style of one row's cell ("" for none)
    no_wrap: bool = True
    fallback: "Column | None" = None  # a narrower form shown instead when this one is left out


def terminal_width() -> int:
    """COLUMNS when set, else the terminal's width (100 when not a terminal); never below 80."""
    env = os.environ.get("COLUMNS", "")
    cols = int(env) if env.isdigit() and int(env) > 0 else shutil.get_terminal_size((DEFAULT_WIDTH, 40)).columns
    return max(MIN_WIDTH, cols)


def console(width: int | None = None):
    from rich.console import Console

    return Console(highlight=False, width=width or terminal_width(), soft_wrap=False)


def _table(columns: Sequence[Column], rows: Sequence, title: str | None, fold_first: int | None = None):
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0), pad_edge=False, header_style="bold",
              title=title, title_justify="left", title_style="bold")
    for i, c in enumerate(columns):
        fold = fold_first is not None and i == 0
        t.add_column(c.header, justify=c.justify, no_wrap=c.no_wrap and not fold, overflow="fold" if fold else "ellipsis",
                     max_width=fold_first if fold else None)
    for r in rows:
        t.add_row(*[(f"[{c.style(r)}]" if c.style and c.style(r) else "") + _escape(c.cell(r))
                    + ("[/]" if c.style and c.style(r) else "") for c in columns])
    return t


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _width(table) -> int:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=10_000, highlight=False).print(table)
    return max((len(line.rstrip()) for line in buf.getvalue().splitlines()), default=0)


def fit(columns: Sequence[Column], rows: Sequence, width: int, title: str | None = None):
    """The table with as many columns as fit ``width``, dropping the highest priority numbers first; the first
    column folds as a last resort."""
    cols = list(columns)
    while True:
        t = _table(cols, rows, title)
        if _width(t) <= width:
            return t
        droppable = [c for c in cols if c.priority > 0]
        if not droppable:
            break
        worst = max(c.priority for c in droppable)
        cols = [(c.fallback if c.priority == worst else c) for c in cols if c.priority != worst or c.fallback]
    rest = _width(_table(cols[1:], rows, None)) + 2 if len(cols) > 1 else 0
    return _table(cols, rows, title, fold_first=max(12, width - rest))


def plain_width(table) -> int:
    """Widest line of ``table`` as printed (tests)."""
    return _width(table)


def out(con, *parts, indent: int = 2, hang: int = 2) -> None:
    """One line of text, wrapped at the console width: continuation lines indented ``hang`` more. Parts are text or
    (text, style); nothing is read as markup (model ids and reasons may hold brackets)."""
    from rich.text import Text

    text = Text.assemble(*parts)
    lines = text.wrap(con, max(20, con.width - indent - hang))
    for i, line in enumerate(lines):
        line.rstrip()
        con.print(Text(" " * (indent + (hang if i else 0))) + line, soft_wrap=True)
