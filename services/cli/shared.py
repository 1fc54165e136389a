"""What several subcommands do alike: who is acting, a reply as one JSON line (``--json``),
a time as people read it."""

from __future__ import annotations

import getpass
import os
import sys
import time

import msgspec


def author() -> str:
    """Who saves or runs: SURGE_USER, else the login name."""
    try:
        return os.environ.get("SURGE_USER") or getpass.getuser()
    except Exception:
        return "anonymous"


def json_out(data) -> None:
    """``data`` (a msgspec Struct, list or dict) as one JSON line on stdout (``--json``)."""
    sys.stdout.write(msgspec.json.encode(data).decode() + "\n")


def local_time(t: float | None, zone: bool = False) -> str:
    """A local time, ``-`` for none; with ``zone`` its UTC offset too (schedules)."""
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %z" if zone else "%Y-%m-%d %H:%M:%S", time.localtime(t))
