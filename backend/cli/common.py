"""Helpers shared by CLI commands: the acting user, JSON output, tables."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def actor(args):
    from backend.users import cli_actor

    return cli_actor(getattr(args, "user", None))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)


def money(v: float | None) -> str:
    """Money in the terminal: the dashboard's rule (``backend.costs.money_text``)."""
    from backend.costs import money_text

    return money_text(v)
