"""What several subcommands do alike: who is acting, a reply as one JSON line (``--json``),
a listing (JSON or a table), a time as people read it."""

from __future__ import annotations

import getpass
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec
from rich.console import Console
from rich.table import Table

T = TypeVar("T")


def author() -> str:
    """Who saves or runs: SURGE_USER, else the login name."""
    try:
        return os.environ.get("SURGE_USER") or getpass.getuser()
    except Exception:
        return "anonymous"


def json_out(data) -> None:
    """``data`` (a msgspec Struct, list or dict) as one JSON line on stdout (``--json``)."""
    sys.stdout.write(msgspec.json.encode(data).decode() + "\n")


def listing(console: Console, as_json: bool, items: Sequence[T], noun: str,
            columns: Sequence[str], row: Callable[[T], Sequence[str]]) -> int:
    """A listing command's answer: the items as one JSON line (``--json``), else a table
    titled by their count (``3 test(s)``), ``row(item)`` a row. The exit status: 0."""
    if as_json:
        json_out(items)
        return 0
    t = Table(title=f"{len(items)} {noun}(s)", title_justify="left")
    for col in columns:
        t.add_column(col)
    for item in items:
        t.add_row(*row(item))
    console.print(t)
    return 0


def local_time(t: float | None, zone: bool = False) -> str:
    """A local time, ``-`` for none; with ``zone`` its UTC offset too (schedules)."""
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %z" if zone else "%Y-%m-%d %H:%M:%S", time.localtime(t))
