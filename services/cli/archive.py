"""The run archive from the command line: notes, conclusions, tags, links, baselines,
search (``surge ls --test … --tag …``), and runs as files (docs/archive.md)."""

from __future__ import annotations

import argparse
import sys

import msgspec
from rich.console import Console

from schemas.archive import ArchivedRun, RunBundle
from schemas.errors import BadRequest
from services.cli.registry import arg, command
from services.cli.shared import author, json_out, listing, local_time
from services.common.client import CoordinatorClient

SEARCH_ARGS = [
    arg("--test", help="runs of this catalogue test"),
    arg("--tag", help="runs tagged so (surge tag)"),
    arg("--target", help="a piece of the target system (host:port) or URL"),
    arg("--verdict", choices=["pass", "fail"]),
    arg("--conclusion", choices=["pass", "fail", "inconclusive"], help="what people concluded"),
    arg("--since", help="ISO 8601 time, or how long ago: 7d, 12h"),
    arg("--until", help="ISO 8601 time, or how long ago"),
    arg("--text", help="a piece of a note or conclusion"),
]
_FILTERS = ("test", "tag", "target", "verdict", "conclusion", "since", "until", "text")


def searching(args: argparse.Namespace) -> bool:
    return any(getattr(args, f, None) is not None for f in _FILTERS)


async def search(api: CoordinatorClient, args, console: Console) -> int:
    found = (await api.search(limit=args.limit, **{f: getattr(args, f) for f in _FILTERS})).runs
    return listing(console, args.json, found, "run",
                   ("run", "test", "target", "state", "verdict", "started", "requests", "p99 ms",
                    "tags", "conclusion", "notes"), _search_row)


def _search_row(a: ArchivedRun) -> tuple[str, ...]:
    r, n = a.record, a.annotations
    test = f"{r.test} v{r.test_version}" if r.test else r.plan.name
    if a.baseline:
        test += " (baseline)"
    return (r.run_id, test, a.target_system, r.state, r.verdict or "-", local_time(r.start_at),
            str(r.requests), "-" if r.p99_ms is None else f"{r.p99_ms:.1f}",
            ",".join(n.tags) if n else "", n.conclusion.verdict if n and n.conclusion else "",
            str(len(n.notes)) if n else "0")


@command("note", help="add a note (markdown) to a run", example="surge note RUN 'p99 up after the cache change'",
         args=[arg("run_id"), arg("text", help="markdown; '-' reads it from stdin")], api=True)
async def note(api: CoordinatorClient, args, console: Console) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    a = await api.annotate(args.run_id, note=text, author=author())
    console.print(f"{args.run_id}: {len(a.notes)} note(s)", highlight=False)
    return 0


@command("conclude", help="record what a run showed: pass, fail or inconclusive, with a text",
         example="surge conclude RUN fail 'checkout p99 regressed; see JIRA-123'",
         args=[arg("run_id"), arg("verdict", choices=["pass", "fail", "inconclusive"]),
               arg("text", nargs="?", default="")], api=True)
async def conclude(api: CoordinatorClient, args, console: Console) -> int:
    await api.annotate(args.run_id, conclusion=args.verdict, conclusion_text=args.text, author=author())
    console.print(f"{args.run_id}: concluded {args.verdict}", highlight=False)
    return 0


@command("tag", help="tag a run (or --remove tags)", example="surge tag RUN release-42 nightly",
         args=[arg("run_id"), arg("tags", nargs="+"),
               arg("--remove", action="store_true", help="remove these tags instead")], api=True)
async def tag(api: CoordinatorClient, args, console: Console) -> int:
    fields = {"untag": args.tags} if args.remove else {"tags": args.tags}
    a = await api.annotate(args.run_id, author=author(), **fields)
    console.print(f"{args.run_id}: tags {','.join(a.tags) or '-'}", highlight=False)
    return 0


@command("link", help="link a run to issue tracker URLs", example="surge link RUN https://jira.example.com/browse/SHOP-12",
         args=[arg("run_id"), arg("urls", nargs="+")], api=True)
async def link(api: CoordinatorClient, args, console: Console) -> int:
    a = await api.annotate(args.run_id, links=args.urls, author=author())
    console.print(f"{args.run_id}: {len(a.links)} link(s)", highlight=False)
    return 0


@command("baseline", help="mark a run as its test's baseline; later reports show the change",
         example="surge baseline checkout 20261130-101500-ab12cd\nsurge baseline checkout --clear",
         args=[arg("test"), arg("run_id", nargs="?"),
               arg("--clear", action="store_true", help="the test has no baseline from now on")],
         api=True)
async def baseline(api: CoordinatorClient, args, console: Console) -> int:
    if not args.run_id and not args.clear:
        raise BadRequest("give the run to use as baseline, or --clear", "run_id")
    b = await api.set_baseline(args.test, None if args.clear else args.run_id, author())
    console.print(f"baseline of {b.test}: {b.run_id or 'none'}", highlight=False)
    return 0


def _archive_args(p) -> None:
    from services.cli import registry

    common = [registry.global_options_parser()]
    sub = p.add_subparsers(dest="archive_command", metavar="<verb>", required=True)
    show = sub.add_parser("show", parents=common, help="a run's notes, conclusion, tags and links")
    show.add_argument("run_id")
    exp = sub.add_parser("export", parents=common, help="a run (record, report, notes) as one JSON file")
    exp.add_argument("run_id")
    exp.add_argument("-o", "--output", help="the file (default: RUN.surge-run.json)")
    imp = sub.add_parser("import", parents=common, help="bring an exported run into this archive")
    imp.add_argument("file")


@command("archive", help="the run archive: show a run's notes, export and import runs as files",
         example="surge archive show RUN\nsurge archive export RUN -o run.json\nsurge archive import run.json",
         args=_archive_args, api=True)
async def archive(api: CoordinatorClient, args, console: Console) -> int:
    from services.cli import registry

    registry.fill_global_defaults(args)
    if args.archive_command == "export":
        bundle = await api.export_run(args.run_id)
        path = args.output or f"{args.run_id}.surge-run.json"
        with open(path, "wb") as f:
            f.write(msgspec.json.encode(bundle))
        console.print(f"wrote {path}", highlight=False)
        return 0
    if args.archive_command == "import":
        try:
            with open(args.file, "rb") as f:
                bundle = msgspec.json.decode(f.read(), type=RunBundle)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadRequest(f"not a Surge run file: {args.file}: {exc}", "file") from None
        done = await api.import_run(bundle)
        console.print(f"imported run {done.run_id}", highlight=False)
        return 0
    found = await api.export_run(args.run_id)  # the record and its annotations (and report)
    if args.json:
        json_out({"record": found.record, "annotations": found.annotations})
        return 0
    r, a = found.record, found.annotations
    test = f" test {r.test} v{r.test_version}" if r.test else ""
    console.print(f"[bold]{r.run_id}[/] {r.plan.name}{test} {r.state} {r.verdict or '-'}",
                  highlight=False)
    if a is None:
        console.print("no notes")
        return 0
    if a.conclusion:
        console.print(f"conclusion: {a.conclusion.verdict} — {a.conclusion.text} "
                      f"({a.conclusion.author}, {local_time(a.conclusion.at)})", highlight=False)
    if a.tags:
        console.print("tags: " + ", ".join(a.tags), highlight=False)
    for url in a.links:
        console.print(f"link: {url}", highlight=False)
    for n in a.notes:
        console.print(f"--- {n.author}, {local_time(n.at)}\n{n.text}", highlight=False, markup=False)
    return 0
