"""Other tools' descriptions of traffic → a Surge plan: curl, Postman, HAR, JMeter, OpenAPI.

Each importer is a pure module (text in, ``Imported`` out: a plan as plain data and the
list of everything that could not be mapped). This package is what the CLI (``surge
import``) and the UI (the New run page's import) share: ``build`` converts, applies the
load-model choices, declares any variable the source uses but never sets (listed for
review) and leaves validation to ``loader`` exactly as ``surge validate`` does.
"""

from __future__ import annotations

import os
import re
from typing import Any

from schemas.errors import InvalidPlan
from services.plan import loader, templating
from services.plan.importers import curl, har, jmx, openapi, postman
from services.plan.importers.common import ImportError_, Imported, finish
from services.plan.templating import REF_RE

KINDS = ("har", "postman", "curl", "jmx", "openapi")

__all__ = ["KINDS", "ImportError_", "Imported", "build", "convert", "convert_text", "declare_unset",
           "read_source"]


def read_source(kind: str, source: str) -> tuple[str, str]:
    """(text, base directory for the files it names). For curl, ``source`` may be the command."""
    if kind == "curl" and not os.path.isfile(source):
        return source, os.getcwd()
    try:
        with open(source, encoding="utf-8-sig") as f:
            text = f.read(loader.MAX_PLAN_BYTES * 4)
    except OSError as exc:
        raise ImportError_(f"cannot read {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ImportError_(f"{source} is not UTF-8 text") from None
    return text, os.path.dirname(os.path.abspath(source))


def convert_text(kind: str, text: str, *, name: str | None = None, base_dir: str | None = ".",
                 out_dir: str = ".", target: str | None = None, origin: str | None = None,
                 environment: str | None = None) -> Imported:
    """Convert a source's text. ``base_dir``: where the files it names are read (None: none
    are, as for an upload in the UI); ``origin`` picks which origin's requests a HAR keeps;
    ``environment`` is a Postman environment's JSON text. A source whose shape the
    importer does not expect (a string where its format has a list, ...) is an
    ``ImportError_`` that says so, never another exception."""
    try:
        return _convert_text(kind, text, name=name, base_dir=base_dir, out_dir=out_dir, target=target,
                             origin=origin, environment=environment)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError) as exc:
        if isinstance(exc, ImportError_):
            raise
        raise ImportError_(f"the {kind} source has a shape its format does not allow "
                           f"({type(exc).__name__}: {str(exc)[:200]}); is it a valid {kind} file?") from None


def _convert_text(kind: str, text: str, *, name: str | None, base_dir: str | None, out_dir: str,
                  target: str | None, origin: str | None, environment: str | None) -> Imported:
    if kind == "har":
        return har.convert(text, name or "har-import", origin=origin)
    if kind == "postman":
        return postman.convert(text, name, environment=environment, base_dir=base_dir)
    if kind == "curl":
        return curl.convert(text, name or "curl-import", base_dir=base_dir)
    if kind == "jmx":
        return jmx.convert(text, name, base_dir=base_dir, out_dir=out_dir, target=target)
    if kind == "openapi":
        return openapi.convert(text, name)
    raise ImportError_(f"unknown import kind {kind!r} (one of {', '.join(KINDS)})")


def convert(kind: str, source: str, *, out_path: str | None = None, name: str | None = None,
            target: str | None = None, origin: str | None = None,
            environment: str | None = None) -> Imported:
    """Convert ``source`` (a file path; for curl, the command itself or a file of them)."""
    text, base = read_source(kind, source)
    env_text = read_source("postman", environment)[0] if environment else None
    out_dir = os.path.dirname(os.path.abspath(out_path)) if out_path else os.getcwd()
    return convert_text(kind, text, name=name, base_dir=base, out_dir=out_dir, target=target,
                        origin=origin, environment=env_text)


def build(imported: Imported, *, out_dir: str | None, target: str | None = None, rate: float | None = None,
          users: int | None = None, duration: str | None = None) -> Imported:
    """The load-model choices over what the importer found, unset variables declared."""
    imported.plan = finish(imported.plan, target=target, rate=rate, users=users, duration=duration)
    inline_per_user_vars(imported)
    declare_unset(imported, out_dir)
    return imported


def inline_per_user_vars(imported: Imported) -> None:
    """A source's variable built from what changes per virtual user (a data column, an
    extracted value, ``{{__user}}``…) cannot be a Surge var (vars render once, before any
    user): its text is written where it is used instead, and listed."""
    plan = imported.plan
    variables = plan.get("vars") or {}
    changing = {"__user", "__iteration", "__generator"}  # what a user holds: built-ins,
    for feed in plan.get("data", []):  # data columns, extracted values
        changing.update(feed.get("columns", []))
        for row in feed.get("rows", [])[:100]:
            changing.update(row)
    for flow in plan.get("flows", []) + [plan.get("setup") or {}]:
        for step in flow.get("steps", []):
            changing.update(step.get("extract") or {})
    per_user: dict[str, str] = {}
    changed = True
    while changed:  # a var naming a per-user var is per user too
        changed = False
        for name, value in variables.items():
            if name in per_user or not isinstance(value, str):
                continue
            try:
                refs = templating.references(value)
            except templating.TemplateError:
                continue
            if any((r in changing and r not in variables) or r in per_user for r in refs):
                per_user[name], changed = value, True
    if not per_user:
        return
    ref = re.compile(r"\{\{\s*(" + "|".join(map(re.escape, per_user)) + r")\s*\}\}")

    def inline(value: Any) -> Any:
        if isinstance(value, str):
            for _ in range(len(per_user) + 1):  # a per-user var may name another
                value = ref.sub(lambda m: per_user[m.group(1)], value)
            return value
        if isinstance(value, list):
            return [inline(v) for v in value]
        if isinstance(value, dict):
            return {inline(k): inline(v) for k, v in value.items()}
        return value

    plan = {k: v if k in ("vars", "data") else inline(v) for k, v in plan.items()}
    plan["vars"] = {k: v for k, v in variables.items() if k not in per_user}
    if not plan["vars"]:
        del plan["vars"]
    imported.plan = plan
    imported.unmapped.append(f"variables {', '.join(per_user)} change per virtual user: written out where "
                             "they are used (a Surge var renders once, before any user)")


def declare_unset(imported: Imported, out_dir: str | None = ".") -> None:
    """Variables the source reads but never sets become empty ``vars``, listed.
    ``out_dir`` None: no data file is read to learn its columns."""
    plan = imported.plan
    known = set(plan.get("vars", {})) | {"__user", "__iteration", "__generator"}
    for feed in plan.get("data", []):
        known.update(feed.get("columns", []))
        if feed.get("file") and not feed.get("columns") and out_dir is not None:
            try:  # the columns a CSV's header line names
                rows = loader.read_rows(os.path.join(out_dir, feed["file"]),
                                        delimiter=feed.get("delimiter", ","),
                                        quoted=feed.get("quoted", True))
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
            used.extend(m.group(1).split("|")[0].strip() for m in REF_RE.finditer(value))
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
