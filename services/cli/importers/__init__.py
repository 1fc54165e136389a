"""``surge import har|postman|curl|jmx``: other tools' descriptions of traffic → a Surge plan.

Each importer is a pure module (text in, ``Imported`` out). This package's ``run``
reads the input, converts it, declares any variable the source uses but never sets
(listed for review), validates the result exactly as ``surge validate`` does, and
writes the plan with what could not be mapped listed at its top.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from rich.console import Console

from schemas.errors import InvalidPlan
from services.cli.importers import curl, har, jmx, postman
from services.cli.importers.common import ImportError_, Imported, finish
from services.plan import loader
from services.plan.templating import REF_RE

KINDS = ("har", "postman", "curl", "jmx")


def convert(kind: str, source: str, *, out_path: str | None = None, name: str | None = None,
            target: str | None = None) -> Imported:
    """Convert ``source`` (a file path; for curl, the command itself or a file of them)."""
    if kind == "curl" and not os.path.isfile(source):
        text, base = source, "."
    else:
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read(loader.MAX_PLAN_BYTES * 4)
        except OSError as exc:
            raise ImportError_(f"cannot read {source}: {exc.strerror}") from None
        base = os.path.dirname(os.path.abspath(source))
    out_dir = os.path.dirname(os.path.abspath(out_path)) if out_path else os.getcwd()
    if kind == "har":
        return har.convert(text, name or "har-import")
    if kind == "postman":
        return postman.convert(text, name)
    if kind == "curl":
        return curl.convert(text, name or "curl-import")
    if kind == "jmx":
        return jmx.convert(text, name, base_dir=base, out_dir=out_dir, target=target)
    raise ImportError_(f"unknown import kind {kind!r} (one of {', '.join(KINDS)})")


def declare_unset(imported: Imported, out_dir: str = ".") -> None:
    """Variables the source reads but never sets become empty ``vars``, listed."""
    plan = imported.plan
    known = set(plan.get("vars", {})) | {"__user", "__iteration", "__generator"}
    for feed in plan.get("data", []):
        known.update(feed.get("columns", []))
        if feed.get("file") and not feed.get("columns"):
            try:  # the columns a CSV's header line names
                rows = loader.read_rows(os.path.join(out_dir, feed["file"]))
                known.update(rows[0] if rows else {})
            except InvalidPlan:
                pass
        for row in feed.get("rows", [])[:100]:
            known.update(row)
    steps = [s for f in plan.get("flows", []) for s in f.get("steps", [])]
    steps += (plan.get("setup") or {}).get("steps", [])
    for step in steps:
        known.update(step.get("extract", {}))
    used: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            used.extend(m.group(1).strip() for m in REF_RE.finditer(value))
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)

    walk({k: v for k, v in plan.items() if k != "data"})
    for ref in dict.fromkeys(used):
        if ref.startswith("$") or ref in known or not re.fullmatch(r"[A-Za-z_]\w*", ref):
            continue
        plan.setdefault("vars", {})[ref] = ""
        known.add(ref)
        imported.unmapped.append(f"variable {{{{{ref}}}}} is used but never set; declared empty in vars")


def run(args, console: Console) -> int:
    try:
        imported = convert(args.kind, args.source, out_path=args.output, name=args.name,
                           target=args.target)
    except ImportError_ as exc:
        Console(stderr=True).print(f"[red]error[/] cannot import: {exc}", highlight=False)
        return 2
    duration = args.duration
    imported.plan = finish(imported.plan, target=args.target, rate=args.rate, users=args.users,
                           duration=duration)
    declare_unset(imported, os.path.dirname(os.path.abspath(args.output)) if args.output else os.getcwd())
    text = imported.to_yaml(f"{args.kind} {os.path.basename(args.source) if args.kind != 'curl' or os.path.isfile(args.source) else 'command'}")
    out = args.output
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    try:
        if out:
            loader.load(out)
        else:
            loader.from_obj(loader.embed_data(imported.plan, os.getcwd()))
    except InvalidPlan as exc:
        where = f" (field: {exc.field})" if exc.field else ""
        Console(stderr=True).print(f"[red]error[/] the imported plan does not validate: "
                                   f"{exc.message}{where}", highlight=False)
        return 2
    if not out:
        sys.stdout.write(text)
        sys.stdout.flush()
    err = Console(stderr=True)
    steps = sum(len(f["steps"]) for f in imported.plan.get("flows", []))
    err.print(f"[green]ok[/] {args.kind}: {steps} steps → {out or 'stdout'}", highlight=False)
    for line in imported.unmapped:
        err.print(f"  [yellow]not mapped[/] {line}", highlight=False)
    return 0
