"""``surge start`` and ``surge logs``: one generator of a running test, and its log.

``surge rate RUN N --generator ID`` and ``surge stop RUN --generator ID`` live with
their run-wide forms in commands.py; every change says who asked (``who()``), and the
run's events show it.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import sys

import msgspec
from rich.console import Console

from schemas.control import ENDED_STATES
from schemas.errors import SurgeError
from services.cli.registry import arg, command
from services.common import runlogs
from services.common.client import CoordinatorClient

LAST_LINES_S = 2.0  # after the run ends, how long --follow waits for the last lines


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


async def _until_ended(api: CoordinatorClient, run_id: str, ended: asyncio.Event) -> None:
    """Set ``ended`` once the run has ended and its generators' last lines are in."""
    while True:
        try:
            if (await api.get(run_id)).state in ENDED_STATES:
                await asyncio.sleep(LAST_LINES_S)
                ended.set()
                return
        except SurgeError:
            pass
        await asyncio.sleep(1.0)


@command("logs", help="show the generators' log lines of a run (kept after it ends)",
         example="surge logs 20261130-101500-ab12cd\n"
                 "surge logs 20261130-101500-ab12cd --generator gen-2 --follow",
         args=[arg("run_id"),
               arg("--generator", metavar="ID", help="only this generator's lines"),
               arg("-f", "--follow", action="store_true",
                   help="keep printing new lines until the run ends (Ctrl-C leaves)")],
         api=True)
async def logs(api: CoordinatorClient, args, console: Console) -> int:
    await api.get(args.run_id)  # not_found for a run that never was
    js = api.nc.jetstream()
    ended: asyncio.Event | None = None
    watcher = None
    if args.follow:
        ended = asyncio.Event()
        watcher = asyncio.create_task(_until_ended(api, args.run_id, ended))
    count = 0
    try:
        async for line in runlogs.read(js, args.run_id, args.generator, follow=ended):
            count += 1
            if args.json:
                sys.stdout.write(msgspec.json.encode(line).decode() + "\n")
            else:
                console.print(runlogs.text(line), markup=False, highlight=False, soft_wrap=True)
    finally:
        if watcher is not None:
            watcher.cancel()
    if not count and not args.json:
        whose = f"generator {args.generator} in " if args.generator else ""
        Console(stderr=True).print(f"no log lines from {whose}run {args.run_id}", highlight=False)
    return 0
