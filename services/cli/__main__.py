"""The ``surge`` command: run, validate, stop, rate, ls, generators, report, up, import.

Exit codes: 0 thresholds passed (or the command worked), 1 thresholds failed,
2 an error (invalid plan, no generators, no NATS, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import msgspec
from rich.console import Console

from schemas.errors import SurgeError
from services.cli import commands
from services.common import logs
from services.common.config import DEFAULT_NATS_URL


def parser() -> argparse.ArgumentParser:
    default_nats = os.environ.get("SURGE_NATS_URL", DEFAULT_NATS_URL)
    p = argparse.ArgumentParser(prog="surge", description="Distributed HTTP load testing over NATS")
    p.add_argument("--nats", default=default_nats, help=f"NATS URL (default {default_nats})")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a plan and wait for its verdict")
    run.add_argument("plan")
    run.add_argument("--rate", type=float, help="total requests/s (replaces the plan's profile)")
    run.add_argument("--duration", help="e.g. 30s, 2m")
    run.add_argument("--generators", type=int, help="how many generators to use")
    run.add_argument("--report", help="write the JSON report here")
    run.add_argument("--junit", help="write thresholds as JUnit XML here")
    run.add_argument("--html", help="write the report as one self-contained HTML file here")
    run.add_argument("--quiet", action="store_true", help="no live lines, only the summary")

    val = sub.add_parser("validate", help="check a plan (locally; --remote asks the coordinator)")
    val.add_argument("plan")
    val.add_argument("--remote", action="store_true")
    val.add_argument("--json", action="store_true")

    stop = sub.add_parser("stop", help="stop a running test")
    stop.add_argument("run_id")

    rate = sub.add_parser("rate", help="change a running test's total rate")
    rate.add_argument("run_id")
    rate.add_argument("rate", type=float)

    ls = sub.add_parser("ls", help="list runs")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--limit", type=int, default=20)

    gens = sub.add_parser("generators", help="list live generators")
    gens.add_argument("--json", action="store_true")

    rep = sub.add_parser("report", help="show a finished run's report")
    rep.add_argument("run_id")
    rep.add_argument("--json", action="store_true")
    rep.add_argument("--html", help="also write it as one self-contained HTML file here")

    imp = sub.add_parser("import", help="turn a HAR, Postman collection, curl command or JMeter plan into a plan")
    imp.add_argument("kind", choices=["har", "postman", "curl", "jmx"])
    imp.add_argument("source", help="the file (for curl: the command, or a file of commands)")
    imp.add_argument("-o", "--output", help="write the plan here (default: stdout)")
    imp.add_argument("--target", help="send to this origin instead (http[s]://host:port)")
    imp.add_argument("--rate", type=float, help="open model: total arrivals/s")
    imp.add_argument("--users", type=int, help="closed model: virtual users (default 1)")
    imp.add_argument("--duration", help="e.g. 30s, 2m")
    imp.add_argument("--name", help="the plan's name")

    up = sub.add_parser("up", help="start the whole stack locally (what `make run` uses)")
    up.add_argument("--generators", type=int, default=2)
    up.add_argument("--demo", help="run this plan once the stack is up")
    up.add_argument("--data-dir", default=".surge")
    up.add_argument("--target-port", type=int, default=8080)
    up.add_argument("--no-target", action="store_true", help="do not start the demo target")
    up.add_argument("--insecure", action="store_true",
                    help="no NATS users or TLS (default: per-role users + TLS, docs/security.md)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logs.quiet_known_noise()
    console = Console(stderr=False)
    try:
        if args.command == "up":
            from services.cli import up

            code = up.main(args, console)
        elif args.command == "import":
            from services.cli import importers

            code = importers.run(args, console)
        else:
            code = asyncio.run(commands.dispatch(args, console))
    except SurgeError as err:
        where = f" (field: {err.field})" if err.field else ""
        Console(stderr=True).print(f"[red]error[/] {err.code}: {err.message}{where}", highlight=False)
        if getattr(args, "json", False):
            print(msgspec.json.encode({"error": err.body()}).decode())
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
