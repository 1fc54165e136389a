"""``surge context ls|use|show|add`` and ``surge env``: saved connections, as kubectl has them.

The contexts themselves live in ``services.common.contexts`` (the UI reads them too);
this module is their command line.
"""

from __future__ import annotations

import os
import shlex
import sys

import msgspec
from rich.console import Console
from rich.table import Table

from schemas.errors import BadRequest
from services.cli.connection import settings
from services.cli.registry import arg, command
from services.common import contexts


@command("context", help="list, choose, show, add or remove saved connections (like kubectl config)",
         example="surge context ls\nsurge context use local\nsurge context show\n"
                 "surge context add staging --nats tls://nats.staging:4222 --user cli "
                 "--password-file ~/.surge-staging.pw --ca staging-ca.pem",
         args=[arg("action", choices=["ls", "use", "show", "add", "rm"]),
               arg("name", nargs="?", help="the context (show: default the current one)")],
         aliases=("ctx",))
def context(args, console: Console) -> int:
    if args.action == "ls":
        return _ls(args, console)
    if args.action in ("use", "add", "rm") and not args.name:
        raise BadRequest(f"surge context {args.action} needs a NAME", "name")
    if args.action == "use":
        ctx = contexts.use(args.name)
        console.print(f"current context: [bold]{ctx.name}[/] ({ctx.url})", highlight=False)
        return 0
    if args.action == "rm":
        contexts.remove(args.name)
        console.print(f"removed context {args.name}", highlight=False)
        return 0
    if args.action == "add":
        if not args.nats:
            raise BadRequest("surge context add NAME needs --nats URL (and --user, --password-file, "
                             "--ca as the server wants)", "nats")
        ctx = contexts.Context(name=args.name, url=args.nats, user=args.user or "",
                               password_file=_abs(args.password_file), creds=_abs(args.creds),
                               ca=_abs(args.ca))
        path = contexts.save(ctx)
        console.print(f"saved context {ctx.name} in {path}; `surge context use {ctx.name}` makes "
                      f"it current", highlight=False)
        return 0
    name = args.name or contexts.current_name()
    if not name:
        raise BadRequest("no current context (`surge up` writes `local`; `surge context ls`)")
    ctx = contexts.load(name)
    if args.json:
        sys.stdout.write(msgspec.json.encode(ctx).decode() + "\n")
        return 0
    for field in msgspec.structs.fields(ctx):
        value = getattr(ctx, field.name)
        if value:
            console.print(f"{field.name:>14}: {value}", highlight=False)
    return 0


def _abs(path: str | None) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else ""


def _ls(args, console: Console) -> int:
    current = contexts.current_name()
    items = []
    for name in contexts.names():
        try:
            items.append(contexts.load(name))
        except BadRequest:
            continue
    if args.json:
        out = [{**msgspec.to_builtins(c), "current": c.name == current} for c in items]
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
        return 0
    if not items:
        console.print("no contexts yet; `surge up` writes `local`, `surge context add` others")
        return 0
    table = Table(box=None)
    for col in ("", "NAME", "URL", "USER", "CA"):
        table.add_column(col)
    for c in items:
        table.add_row("*" if c.name == current else "", c.name, c.url, c.user, c.ca)
    console.print(table)
    return 0


@command("env", help="print `export` lines for other tools (SURGE_NATS_*, the nats CLI)",
         example='surge env\neval "$(surge env)"\nsurge env --context staging')
def env(args, console: Console) -> int:
    s = settings(args)
    lines = [f"# surge: {s.source}"]
    variables = {"SURGE_NATS_URL": s.url, "SURGE_NATS_USER": s.auth.user,
                 "SURGE_NATS_PASSWORD_FILE": s.password_file, "SURGE_NATS_CREDS": s.auth.creds,
                 "SURGE_NATS_TLS_CA": s.auth.tls_ca}
    for key, value in variables.items():
        if value:
            lines.append(f"export {key}={shlex.quote(value)}")
    ctx = contexts.load(s.context) if s.context else None
    if ctx is not None and contexts.nats_cli_path(ctx).exists():
        lines.append(f"# the nats CLI: its own context {contexts.nats_cli_name(ctx)} (written by surge up)")
        lines.append(f"export NATS_CONTEXT={shlex.quote(contexts.nats_cli_name(ctx))}")
    else:
        lines.append("# the nats CLI")
        lines.append(f"export NATS_URL={shlex.quote(s.url)}")
        if s.auth.user:
            lines.append(f"export NATS_USER={shlex.quote(s.auth.user)}")
        if s.password_file:
            lines.append(f'export NATS_PASSWORD="$(cat {shlex.quote(s.password_file)})"')
        if s.auth.creds:
            lines.append(f"export NATS_CREDS={shlex.quote(s.auth.creds)}")
        if s.auth.tls_ca:
            lines.append(f"export NATS_CA={shlex.quote(s.auth.tls_ca)}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
