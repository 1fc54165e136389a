"""``surge start`` and ``surge logs``: one generator of a running test, and its log.

``surge rate RUN N --generator ID`` and ``surge stop RUN --generator ID`` live with
their run-wide forms in commands.py; every change says who asked (``who()``), and the
run's events show it.
"""

from __future__ import annotations

import getpass
import socket

from rich.console import Console

from services.cli.registry import arg, command
from services.common.client import CoordinatorClient


def who() -> str:
    """Who asks, for the run's events: ``cli alice@laptop``."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (a container with a random uid)
        user = "unknown"
    return f"cli {user}@{socket.gethostname()}"[:200]


@command("start", help="start one generator of a running test again, or add an idle one to it",
         example="surge start 20261130-101500-ab12cd --generator gen-2",
         args=[arg("run_id"),
               arg("--generator", required=True, metavar="ID",
                   help="a generator stopped in the run (back at its rate), or an idle one "
                        "of the run's pool (joins at the members' mean rate)")],
         api=True)
async def start(api: CoordinatorClient, args, console: Console) -> int:
    ok = await api.start_generator(args.run_id, args.generator, by=who())
    console.print(f"{ok.run_id}: generator {args.generator} started (epoch {ok.epoch})")
    return 0
