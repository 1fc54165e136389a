"""``surge import har|postman|curl|jmx|openapi``: the CLI's side of the importers.

The conversion is ``services.plan.importers`` (shared with the UI). Here: read the
source, write the plan with what was not mapped listed at its top, validate it exactly
as ``surge validate`` does, and print (or with ``--json`` return) what was not mapped.
"""

from __future__ import annotations

import json
import os
import sys

from rich.console import Console

from schemas.errors import InvalidPlan
from services.plan import importers, loader
from services.plan.importers import ImportError_

KINDS = importers.KINDS


def _fail(args, message: str) -> int:
    Console(stderr=True).print(f"[red]error[/] {message}", highlight=False)
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": "import_failed", "message": message, "field": None}}))
    return 2


def run(args, console: Console) -> int:
    out = args.output
    out_dir = os.path.dirname(os.path.abspath(out)) if out else os.getcwd()
    try:
        imported = importers.convert(args.kind, args.source, out_path=out, name=args.name,
                                     target=args.target, origin=getattr(args, "origin", None),
                                     environment=getattr(args, "environment", None))
    except ImportError_ as exc:
        return _fail(args, f"cannot import: {exc}")
    importers.build(imported, out_dir=out_dir, target=args.target, rate=args.rate,
                    users=args.users, duration=args.duration)
    label = os.path.basename(args.source) if args.kind != "curl" or os.path.isfile(args.source) else "command"
    text = imported.to_yaml(f"{args.kind} {label}")
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
        return _fail(args, f"the imported plan does not validate: {exc.message}{where}")
    steps = sum(len(f["steps"]) for f in imported.plan.get("flows", []))
    if getattr(args, "json", False):
        print(json.dumps({"plan": imported.plan, "output": out, "steps": steps,
                          "unmapped": imported.unmapped, "everything_mapped": not imported.unmapped}))
        return 0
    if not out:
        sys.stdout.write(text)
        sys.stdout.flush()
    err = Console(stderr=True)
    err.print(f"[green]ok[/] {args.kind}: {steps} steps → {out or 'stdout'}", highlight=False)
    for line in imported.unmapped:
        err.print(f"  [yellow]not mapped[/] {line}", highlight=False)
    if not imported.unmapped:
        err.print("  everything in the source was mapped", highlight=False)
    return 0
