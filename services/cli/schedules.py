"""``surge schedule …`` and ``surge suite …``: when tests run by themselves, and in phases.

docs/schedules.md says how fires, missed fires and suite phases behave.
"""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console

from schemas.schedules import Overrides, ScheduleInfo, SuiteRun
from services.cli import registry
from services.cli.registry import command
from services.cli.shared import author, json_out, listing, local_time
from services.common.client import CoordinatorClient
from services.plan import loader


def _overrides(args) -> Overrides:
    duration = loader.parse_duration(args.duration, "duration") if args.duration else None
    return Overrides(rate=args.rate, duration=duration, generators=args.generators)


def _override_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=float, help="total requests/s (replaces the profile)")
    p.add_argument("--duration", help="e.g. 30s, 2m")
    p.add_argument("--generators", type=int)


def _schedule_args(p) -> None:
    common = [registry.global_options_parser()]
    sub = p.add_subparsers(dest="schedule_command", metavar="<verb>", required=True)
    add = sub.add_parser("add", parents=common, help="run a test (or --suite) at a time or on a cron")
    add.add_argument("name", help="the catalogue test to run (with --suite: the suite)")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", metavar="TIME",
                      help="ISO 8601 (2026-12-01T02:00, in --tz unless it has an offset) or +30s, +2h")
    when.add_argument("--cron", metavar="EXPR", help="'0 2 * * *' (6 fields: seconds first)")
    add.add_argument("--tz", default="UTC", metavar="ZONE", help="IANA zone (default UTC)")
    add.add_argument("--suite", action="store_true", help="NAME is a suite, not a test")
    add.add_argument("--as", dest="schedule_name", metavar="SCHEDULE",
                     help="the schedule's own name (default: NAME)")
    add.add_argument("--missed", choices=["run-late", "skip"], default="run-late",
                     help="a fire missed while no coordinator ran: run it once late, or skip it")
    add.add_argument("--replace", action="store_true", help="replace a schedule of that name")
    add.add_argument("--dry-run", action="store_true", help="show the next fire times, save nothing")
    _override_args(add)
    sub.add_parser("ls", parents=common, help="schedules, their next fire times and last fire")
    rm = sub.add_parser("rm", parents=common, help="remove a schedule")
    rm.add_argument("name")


@command("schedule", help="run tests or suites at a time or on a cron (docs/schedules.md)",
         example="surge schedule add checkout --at +30s\n"
                 "surge schedule add checkout --cron '0 2 * * 1-5' --tz Europe/Berlin --as nightly\n"
                 "surge schedule ls\nsurge schedule rm nightly",
         args=_schedule_args, api=True)
async def schedule(api: CoordinatorClient, args: argparse.Namespace, console: Console) -> int:
    registry.fill_global_defaults(args)
    if args.schedule_command == "add":
        info = await api.schedule_add(
            args.schedule_name or args.name, test=None if args.suite else args.name,
            suite=args.name if args.suite else None, at=args.at, cron=args.cron, tz=args.tz,
            missed=args.missed.replace("-", "_"), overrides=_overrides(args),
            replace=args.replace, dry_run=args.dry_run, author=author(),
        )
        if args.json:
            json_out(info)
            return 0
        verb = "would fire" if args.dry_run else f"schedule [bold]{info.schedule.name}[/] fires"
        console.print(f"{verb} at: " + ", ".join(local_time(t, zone=True) for t in info.next_fires), highlight=False)
        return 0
    if args.schedule_command == "rm":
        gone = await api.schedule_delete(args.name)
        console.print(f"removed schedule {gone.name}", highlight=False)
        return 0
    return listing(console, args.json, (await api.schedule_list()).schedules, "schedule",
                   ("name", "runs", "when", "next", "last fire"), _schedule_row)


def _schedule_row(info: ScheduleInfo) -> tuple[str, ...]:
    s = info.schedule
    what = f"test {s.test}" if s.test else f"suite {s.suite}"
    when = f"cron '{s.cron}' {s.tz}" if s.cron else f"at {local_time(s.at, zone=True)}"
    last = "-"
    if info.last:
        last = f"{local_time(info.last.fire_at, zone=True)} {info.last.state} {info.last.run_id}"
    return s.name, what, when, local_time(info.next_fires[0] if info.next_fires else None, zone=True), last


def _suite_args(p) -> None:
    common = [registry.global_options_parser()]
    sub = p.add_subparsers(dest="suite_command", metavar="<verb>", required=True)
    save = sub.add_parser("save", parents=common, help="define how a suite runs")
    save.add_argument("name")
    save.add_argument("--test", action="append", dest="tests", default=[],
                      help="a test, in order (repeat); default: the tests labelled with the suite")
    save.add_argument("--stages", metavar="RATES",
                      help="one test at increasing total rates, e.g. 100,200,400")
    save.add_argument("--pause", default="0s", help="between steps, e.g. 30s")
    save.add_argument("--keep-going", action="store_true",
                      help="run every step even after a failed verdict")
    _override_args(save)
    sub.add_parser("ls", parents=common, help="suites and recent suite runs")
    run = sub.add_parser("run", parents=common, help="run a suite now")
    run.add_argument("name")
    run.add_argument("--wait", action="store_true", help="follow it to the end (exit 1: failed)")
    show = sub.add_parser("show", parents=common, help="one suite run, step by step")
    show.add_argument("id")


@command("suite", help="suites in phases: a sequence of tests, or one test in rising stages",
         example="surge suite save shop --test login --test checkout --pause 10s\n"
                 "surge suite save ramp --test checkout --stages 100,200,400 --pause 30s\n"
                 "surge suite run shop --wait",
         args=_suite_args, api=True)
async def suite(api: CoordinatorClient, args: argparse.Namespace, console: Console) -> int:
    registry.fill_global_defaults(args)
    verb = args.suite_command
    if verb == "save":
        rates = [float(r) for r in args.stages.split(",")] if args.stages else []
        saved = await api.suite_save(
            args.name, mode="stages" if rates else "sequence", tests=args.tests, rates=rates,
            pause_s=float(loader.parse_duration(args.pause, "pause")),
            stop_on_fail=not args.keep_going, overrides=_overrides(args), author=author(),
        )
        if args.json:
            json_out(saved)
        else:
            console.print(f"saved suite [bold]{saved.name}[/] ({saved.mode})", highlight=False)
        return 0
    if verb == "ls":
        listed = await api.suite_list()
        if args.json:
            json_out(listed)
            return 0
        for s in listed.suites:
            steps = (f"{s.tests[0]} at {', '.join(f'{r:g}' for r in s.rates)}/s" if s.mode == "stages"
                     else ", ".join(s.tests) or f"tests labelled {s.name}")
            console.print(f"[bold]{s.name}[/] {s.mode}: {steps}; pause {s.pause_s:g}s", highlight=False)
        for r in listed.runs:
            console.print(f"  {r.id} {r.suite} {r.state} {local_time(r.started_at, zone=True)}", highlight=False)
        return 0
    if verb == "show":
        run = await api.suite_get(args.id)
        _show(run, args, console)
        return 0 if run.state in ("running", "passed") else 1
    run = await api.suite_run(args.name, author())
    console.print(f"suite run [cyan]{run.id}[/] started: {len(run.steps)} steps", highlight=False)
    if not args.wait:
        return 0
    seen: dict[int, str] = {}
    while run.state == "running":
        await asyncio.sleep(1.0)
        run = await api.suite_get(run.id)
        for i, step in enumerate(run.steps):
            if seen.get(i) != step.state and step.state != "pending":
                seen[i] = step.state
                console.print(f"  step {i + 1} {step.test} v{step.version}: {step.state} "
                              f"({step.run_id})", highlight=False)
    _show(run, args, console)
    return 0 if run.state == "passed" else 1


def _show(run: SuiteRun, args, console: Console) -> None:
    if args.json:
        json_out(run)
        return
    console.print(f"suite run [cyan]{run.id}[/] of {run.suite}: [bold]{run.state}[/]", highlight=False)
    for i, s in enumerate(run.steps):
        rate = f" at {s.rate:g}/s" if s.rate else ""
        console.print(f"  {i + 1}. {s.test} v{s.version}{rate}: {s.state} {s.run_id}"
                      + (f" — {s.error}" if s.error else ""), highlight=False)
