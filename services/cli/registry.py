"""Every ``surge`` subcommand, declared once: its name, help, example, arguments, handler.

A module adds a subcommand with the ``command`` decorator and is listed once in
``services/cli/__main__.py`` (``COMMAND_MODULES``)::

    @command("rate", help="change a running test's total rate",
             example="surge rate r-20261130-0001 500",
             args=[arg("run_id"), arg("rate", type=float, help="total requests/s")],
             api=True)
    async def rate(api: CoordinatorClient, args, console) -> int:
        ...

With ``api=True`` the handler is awaited with a connected ``CoordinatorClient``
(the current context, SURGE_NATS_* or the global flags decide where and as whom);
otherwise it is called as ``handler(args, console)`` and may be sync or async.
``args`` is a list of ``arg(...)`` or a function that fills the ``ArgumentParser``.
The global options (``GLOBAL_OPTIONS``: --nats, --user, --timeout, -v, --json, ...)
are accepted before or after the subcommand without being declared again.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call, kept for later."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


ArgSpec = Sequence[Arg] | Callable[[argparse.ArgumentParser], None] | None


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    example: str  # one or more lines, each a full command line
    handler: Callable[..., Any]
    args: ArgSpec = None
    api: bool = False  # the handler takes a connected CoordinatorClient first
    aliases: tuple[str, ...] = ()

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if callable(self.args):
            self.args(parser)
        else:
            for a in self.args or ():
                parser.add_argument(*a.flags, **a.options)


COMMANDS: dict[str, Command] = {}


def command(
    name: str, *, help: str, example: str, args: ArgSpec = None, api: bool = False,
    aliases: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as ``surge <name>``."""

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        if name in COMMANDS:
            raise ValueError(f"surge {name} is registered twice")
        COMMANDS[name] = Command(name, help, example, handler, args, api, aliases)
        return handler

    return register


def _seconds(text: str) -> float:
    """A --timeout: a positive, finite number of seconds (0 would fail every command as
    "did not answer in time")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


# The options every subcommand accepts, before or after its name. Their defaults live in
# GLOBAL_DEFAULTS (argparse would otherwise let the subcommand's unset copy overwrite a
# value given before the subcommand).
GLOBAL_OPTIONS: list[Arg] = [
    arg("--context", metavar="NAME",
        help="use this saved context (default: the current one, `surge context ls`)"),
    arg("--nats", "-s", "--server", dest="nats", metavar="URL",
        help="NATS server URL(s), comma-separated (default: the context, SURGE_NATS_URL, "
             "else nats://127.0.0.1:4222)"),
    arg("--user", metavar="NAME", help="NATS user (SURGE_NATS_USER)"),
    arg("--password-file", metavar="PATH", help="file holding the NATS password (SURGE_NATS_PASSWORD_FILE)"),
    arg("--creds", metavar="PATH", help="NATS credentials file (SURGE_NATS_CREDS)"),
    arg("--ca", "--tlsca", dest="ca", metavar="PATH",
        help="CA that signed the NATS server's certificate (SURGE_NATS_TLS_CA)"),
    arg("--timeout", type=_seconds, metavar="SECONDS",
        help="how long to wait for NATS and for each answer (default 5)"),
    arg("-v", "--verbose", action="count", help="say more; on an error, show the details"),
    arg("--json", action="store_true", help="machine-readable output where it applies"),
]
GLOBAL_DEFAULTS: dict[str, Any] = {
    "context": None, "nats": None, "user": None, "password_file": None, "creds": None,
    "ca": None, "timeout": 5.0, "verbose": 0, "json": False,
}


def global_options_parser() -> argparse.ArgumentParser:
    """A parent parser with the global options; every default SUPPRESSed (see above)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options")
    for a in GLOBAL_OPTIONS:
        g.add_argument(*a.flags, default=argparse.SUPPRESS, **a.options)
    return p


def fill_global_defaults(args: argparse.Namespace) -> argparse.Namespace:
    for name, value in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args
