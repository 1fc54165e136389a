"""The ``surge`` command: every subcommand in ``COMMAND_MODULES`` (see registry.py).

Exit codes: 0 thresholds passed (or the command worked), 1 thresholds failed,
2 an error (invalid plan, no generators, no NATS, ...), 130 interrupted, 141 the
reader of its output went away (``surge ls | head``), as for any Unix tool.
An expected failure prints one line on stderr (``-v`` adds the details), never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import sys
import traceback
from typing import NoReturn

import msgspec
from rich.console import Console
from rich.markup import escape

from schemas.errors import SurgeError
from services.cli import registry
from services.cli.connection import CliError, open_api
from services.cli.output import output_closed, stdout_closed
from services.common import logs
from services.common.identity import VERSION

# Add a module here once; its @command functions become subcommands.
COMMAND_MODULES = (
    "services.cli.commands",
    "services.cli.up",
    "services.cli.catalogue",
    "services.cli.context",
    "services.cli.starter",
    "services.cli.fleet",
    "services.cli.schedules",
    "services.cli.archive",
    "services.cli.quotas",
)


class _EndedByClosedOutput(logging.Filter):
    """A task that printed (the live lines) ends the command from inside; asyncio would
    log its SystemExit as "Task exception was never retrieved" with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, SystemExit) and exc.code == 141)


class _Console(Console):
    def on_broken_pipe(self) -> None:  # rich's own would raise SystemExit(1): "thresholds failed"
        output_closed()


class _Parser(argparse.ArgumentParser):
    """argparse's, but under --json a usage error also prints ``{"error": ...}`` on stdout,
    like every other error (subcommands' parsers are of this class too)."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if _Parser.json_errors:
            body = {"code": "bad_request", "message": f"{self.prog}: {message}"}
            print(msgspec.json.encode({"error": body}).decode(), flush=True)
        super().error(message)


def version() -> str:
    return VERSION


def parser() -> argparse.ArgumentParser:
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    common = registry.global_options_parser()
    p = _Parser(
        prog="surge", parents=[common],
        description="Distributed HTTP load testing over NATS.",
        epilog="examples:\n  surge up                      # the whole stack locally\n"
               "  surge run plans/demo.yaml --rate 300\n"
               "  surge <command> --help        # each command, with an example",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"surge {version()}")
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)
    for cmd in registry.COMMANDS.values():
        sp = sub.add_parser(
            cmd.name, aliases=list(cmd.aliases), parents=[common], help=cmd.help,
            description=cmd.help[:1].upper() + cmd.help[1:] + ".",
            epilog="example:\n" + "\n".join(f"  {line}" for line in cmd.example.splitlines()),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_to(sp)
        sp.set_defaults(_command=cmd)
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    _Parser.json_errors = "--json" in (sys.argv[1:] if argv is None else argv)
    return registry.fill_global_defaults(parser().parse_args(argv))


async def _call_api(cmd: registry.Command, args: argparse.Namespace, console: Console) -> int:
    async with open_api(args) as api:
        return await cmd.handler(api, args, console)


def run_command(args: argparse.Namespace, console: Console) -> int:
    cmd: registry.Command = args._command
    if cmd.api:
        return asyncio.run(_call_api(cmd, args, console))
    result = cmd.handler(args, console)
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    return int(result or 0)


def report_error(err: SurgeError, args: argparse.Namespace) -> None:
    where = f" (field: {err.field})" if err.field else ""
    err_console = Console(stderr=True, soft_wrap=True)
    label = "error:" if isinstance(err, CliError) else f"error {err.code}:"
    err_console.print(f"[red]{label}[/] {escape(err.message + where)}", highlight=False)
    detail = getattr(err, "detail", "")
    if args.verbose and detail:
        err_console.print(f"  details: {detail}", highlight=False, markup=False)
    if args.json:
        try:
            print(msgspec.json.encode({"error": err.body()}).decode(), flush=True)
        except BrokenPipeError:
            output_closed()


def main(argv: list[str] | None = None) -> None:
    try:
        args = parse(argv)  # imports every command module: a second on a busy machine
    except KeyboardInterrupt:
        sys.exit(130)
    logs.quiet_known_noise()
    logging.getLogger("asyncio").addFilter(_EndedByClosedOutput())
    console = _Console(stderr=False)
    try:
        code = run_command(args, console)
    except SurgeError as err:
        report_error(err, args)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except OSError as exc:  # a plan, report or output file
        if isinstance(exc, BrokenPipeError) and stdout_closed():
            output_closed()
        what = f"{exc.filename}: " if exc.filename else ""
        report_error(CliError(f"{what}{exc.strerror or exc}", f"{type(exc).__name__}: {exc}",
                              "os_error"), args)
        code = 2
    except Exception as exc:  # a bug: still one line, the traceback with -v
        if args.verbose:
            traceback.print_exc()
        report_error(CliError(f"unexpected {type(exc).__name__}: {exc} (-v shows the traceback; "
                              f"please report it)", "", "internal"), args)
        code = 2
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        output_closed()
    sys.exit(code)


if __name__ == "__main__":
    main()
