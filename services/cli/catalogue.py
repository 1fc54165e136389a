"""``surge test …``: the test catalogue (save, ls, show, diff, run, rm), docs/catalogue.md."""

from __future__ import annotations

import argparse
import difflib
import sys

import msgspec
import yaml
from rich.console import Console

from schemas.catalogue import TestVersion
from schemas.errors import InvalidPlan
from services.cli import commands, registry
from services.cli.registry import command
from services.cli.shared import author, json_out, listing, local_time
from services.common.client import CoordinatorClient
from services.plan import loader


def _test_args(p) -> None:
    """``surge test <verb>``: one nested subcommand per verb, each with the global options."""
    common = [registry.global_options_parser()]
    tsub = p.add_subparsers(dest="test_command", metavar="<verb>", required=True)

    save = tsub.add_parser("save", parents=common, help="save a plan as a new version of a test")
    save.add_argument("plan", help="the plan file (YAML or JSON)")
    save.add_argument("--suite", help="the suite it belongs to (default: as before, else 'default')")
    save.add_argument("--name", help="the test's name (default: the plan's name)")
    save.add_argument("--tag", action="append", dest="tags", help="a tag (repeat for more)")
    save.add_argument("--owner")
    save.add_argument("--description")
    save.add_argument("--target-system", help="default: the target's host:port")

    ls = tsub.add_parser("ls", parents=common, help="list tests (the latest version of each)")
    ls.add_argument("--suite")
    ls.add_argument("--tag")
    ls.add_argument("--search", help="a piece of the name, description or owner")

    show = tsub.add_parser("show", parents=common, help="a test's labels, versions and plan")
    show.add_argument("name")
    show.add_argument("--version", type=int, help="default: the latest")

    diff = tsub.add_parser("diff", parents=common, help="what changed between two versions")
    diff.add_argument("name")
    diff.add_argument("old", type=int)
    diff.add_argument("new", type=int, nargs="?", help="default: the latest")

    run = tsub.add_parser("run", parents=common, help="run a test (the latest version unless --version)")
    run.add_argument("name")
    run.add_argument("--version", type=int)
    run.add_argument("--rate", type=float, help="total requests/s (replaces the profile)")
    run.add_argument("--duration", help="e.g. 30s, 2m")
    run.add_argument("--generators", type=int)
    run.add_argument("--report", help="write the JSON report here")
    run.add_argument("--junit", help="write thresholds as JUnit XML here")
    run.add_argument("--html", help="write the report as one HTML file here")
    run.add_argument("--quiet", action="store_true")

    rm = tsub.add_parser("rm", parents=common, help="remove a test (every version, or --version N)")
    rm.add_argument("name")
    rm.add_argument("--version", type=int)


@command("test", help="the test catalogue: save, ls, show, diff, run, rm (docs/catalogue.md)",
         example="surge test save plans/checkout.yaml --suite shop --tag smoke\n"
                 "surge test ls --suite shop\nsurge test diff checkout 1 2\n"
                 "surge test run checkout --version 1 --rate 50",
         args=_test_args, api=True)
async def test(api: CoordinatorClient, args: argparse.Namespace, console: Console) -> int:
    registry.fill_global_defaults(args)
    return await {
        "save": save, "ls": ls, "show": show, "diff": diff, "run": run, "rm": rm,
    }[args.test_command](api, args, console)


def as_yaml(test: TestVersion) -> str:
    """The text people edit: the YAML as saved, else the plan written out as YAML."""
    if test.source is not None:
        return test.source
    return yaml.safe_dump(msgspec.to_builtins(test.plan), sort_keys=False, allow_unicode=True)


async def save(api: CoordinatorClient, args, console: Console) -> int:
    plan = loader.load(args.plan)  # errors say which file and field, before any request
    try:
        with open(args.plan, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidPlan(f"cannot read plan file {args.plan}: {exc}") from None
    if plan.data:  # the data files were read into the plan: the text alone would not run
        source = None
    test = await api.test_save(
        plan, source, name=args.name, suite=args.suite, tags=args.tags, owner=args.owner,
        description=args.description, target_system=args.target_system, author=author(),
    )
    if args.json:
        json_out(test)
    else:
        console.print(f"saved [bold]{test.name}[/] version {test.version} "
                      f"(suite {test.suite}, target system {test.target_system})", highlight=False)
    return 0


async def ls(api: CoordinatorClient, args, console: Console) -> int:
    tests = (await api.test_list(args.suite, args.tag, args.search)).tests
    return listing(console, args.json, tests, "test",
                   ("name", "suite", "version", "tags", "target system", "owner", "saved"),
                   lambda s: (s.name, s.suite, f"{s.version} of {s.versions}", ",".join(s.tags),
                              s.target_system, s.owner, f"{local_time(s.saved_at)} by {s.author}"))


async def show(api: CoordinatorClient, args, console: Console) -> int:
    detail = await api.test_get(args.name, args.version)
    if args.json:
        json_out(detail)
        return 0
    t = detail.test
    console.print(f"[bold]{t.name}[/] version {t.version}  suite {t.suite}  owner {t.owner}  "
                  f"target system {t.target_system}  tags {','.join(t.tags) or '-'}", highlight=False)
    if t.description:
        console.print(t.description, highlight=False)
    for v in detail.versions:
        mark = "*" if v.version == t.version else " "
        console.print(f" {mark} v{v.version}  {local_time(v.saved_at)}  {v.author}", highlight=False)
    sys.stdout.write("---\n" + as_yaml(t))
    return 0


async def diff(api: CoordinatorClient, args, console: Console) -> int:
    old = (await api.test_get(args.name, args.old)).test
    new = (await api.test_get(args.name, args.new)).test
    lines = list(difflib.unified_diff(
        as_yaml(old).splitlines(keepends=True), as_yaml(new).splitlines(keepends=True),
        f"{old.name} v{old.version} ({old.author})", f"{new.name} v{new.version} ({new.author})",
    ))
    sys.stdout.writelines(lines)
    return 0


async def run(api: CoordinatorClient, args, console: Console) -> int:
    duration = loader.parse_duration(args.duration, "duration") if args.duration else None
    plan = (await api.test_get(args.name, args.version)).test.plan

    async def start():
        started = await api.test_run(args.name, version=args.version, rate=args.rate,
                                     duration=duration, generators=args.generators,
                                     author=author())
        console.print(f"test [bold]{started.test}[/] version {started.test_version}", highlight=False)
        return started

    return await commands.follow_run(api, plan, console, args.report, args.junit, args.quiet,
                                     args.html, start=start)


async def rm(api: CoordinatorClient, args, console: Console) -> int:
    gone = await api.test_delete(args.name, args.version)
    console.print(f"removed {gone.versions} version(s) of {gone.name}", highlight=False)
    return 0
