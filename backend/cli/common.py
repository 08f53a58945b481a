"""Helpers shared by CLI commands: the acting user, JSON output, tables, escaping user text.

Every piece of user text (names, descriptions, file names, log lines, error messages that quote
user input) goes through :func:`safe` before rich prints it, or :func:`visible` before a plain
``print``: rich markup is escaped and control characters (ESC, other C0/C1 controls, bidi
overrides) are shown as ``\\x1b``-style escapes, so a name can neither crash the output, hide a
link, nor drive the terminal.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from rich.console import Console
from rich.markup import escape as _escape_markup
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)

# C0 controls except tab/newline, DEL, C1 controls, and the Unicode bidi / isolate controls that
# reorder what a terminal shows ("Trojan Source"); \r is shown too (it overwrites the line).
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7f, 0xa0)]
            if chr(c) not in "\t\n"}
_CONTROL.update({ord(ch): f"\\u{ord(ch):04x}" for ch in _BIDI})
_ONE_LINE = {**_CONTROL, ord("\n"): "\\n", ord("\t"): "\\t"}


def visible(text: Any, *, one_line: bool = False) -> str:
    """``text`` with control characters made visible (``\\x1b``); for plain ``print``.
    ``one_line``: newline and tab too. Raises nothing."""
    if text is None:
        return ""
    return str(text).translate(_ONE_LINE if one_line else _CONTROL)


def safe(text: Any, *, one_line: bool = False) -> str:
    """User text for a rich string with markup: control characters made visible and rich markup
    escaped, so ``[/bold]`` prints as ``[/bold]``. Raises nothing."""
    return _escape_markup(visible(text, one_line=one_line))


def literal_text(text: Any) -> Text:
    """User text as a rich ``Text`` (never parsed as markup), control characters visible."""
    return Text(visible(text))


def actor(args):
    from backend.accounts.users import cli_actor

    return cli_actor(getattr(args, "user", None))


def print_json(data: Any) -> None:
    """JSON escapes control characters itself (``\\u001b``); markup means nothing in JSON."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    """A table; every cell is shown literally (user text is never read as markup).

    Nothing is cut with an ellipsis on a narrow terminal: the first column (the id a user copies
    into the next command) keeps each value on one line, the others wrap or fold."""
    cells = [[literal_text("" if v is None else v) for v in r] for r in rows]
    t = Table(title=title)
    for i, c in enumerate(columns):
        if i == 0:
            longest = max([len(c), *(r[0].cell_len for r in cells if r)])
            t.add_column(c, no_wrap=True, min_width=longest)
        else:
            t.add_column(c, overflow="fold")
    for r in cells:
        t.add_row(*r)
    console.print(t)


def money(v: float | None) -> str:
    """Money in the terminal: the dashboard's rule (``backend.costs.money_text``)."""
    from backend.costs import money_text

    return money_text(v)
