"""What each ``surge`` subcommand does, as a client of the coordinator API."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from urllib.parse import urlsplit

import msgspec
from rich.console import Console

from schemas import subjects
from schemas.control import ENDED_STATES
from schemas.errors import InvalidPlan, NotLeader, Unavailable
from schemas.plan import Plan
from schemas.stats import LiveSnapshot, Report
from services.reports import html, junit, text
from services.cli import fleet
from services.common import labels
from services.common.client import CoordinatorClient
from services.cli.connection import open_api
from services.cli import archive
from services.cli.registry import arg, command
from services.cli.shared import json_out
from services.plan import loader

_live_decoder = msgspec.json.Decoder(LiveSnapshot)


@command("validate", help="check a plan (locally; --remote asks the coordinator too)",
         example="surge validate plans/demo.yaml\nsurge validate plans/demo.yaml --remote --json",
         args=[arg("plan", help="the plan file (YAML or JSON)"),
               arg("--remote", action="store_true",
                   help="also ask the coordinator (duration, peak rate, request count)")])
async def validate(args, console: Console) -> int:
    if not args.remote:
        return validate_local(args, console)
    async with open_api(args) as api:
        return await validate_remote(api, args, console)


def validate_local(args, console: Console) -> int:
    plan = loader.load(args.plan)
    if args.json:
        json_out({"ok": True, "plan": plan})
    else:
        console.print(f"[green]ok[/] {args.plan}: plan [bold]{plan.name}[/] → {plan.target}")
    return 0


async def validate_remote(api: CoordinatorClient, args, console: Console) -> int:
    result = await api.validate(loader.load(args.plan))
    if args.json:
        json_out(result)
    else:
        console.print(
            f"[green]ok[/] {result.plan.name}: {result.duration_s:g}s, peak {result.peak_rps:g}/s, "
            f"about {result.total_requests:.0f} requests"
        )
    return 0


@command("stop", help="stop a running test, or one generator of it",
         example="surge stop 20261130-101500-ab12cd\nsurge stop 20261130-101500-ab12cd --generator gen-2",
         args=[arg("run_id"),
               arg("--generator", metavar="ID",
                   help="stop only this generator; its share is not moved, the total drops")],
         api=True)
async def stop(api: CoordinatorClient, args, console: Console) -> int:
    ok = await api.stop(args.run_id, args.generator, by=fleet.who())
    if args.generator:
        console.print(f"{ok.run_id}: generator {args.generator} stopped (epoch {ok.epoch})")
    else:
        console.print(f"stopping {ok.run_id} (epoch {ok.epoch})")
    return 0


@command("rate", help="change a running test's total rate, or one generator's",
         example="surge rate 20261130-101500-ab12cd 500\nsurge rate 20261130-101500-ab12cd 200 --generator gen-2",
         args=[arg("run_id"), arg("rate", type=float, help="requests/s (total, or the generator's)"),
               arg("--generator", metavar="ID",
                   help="set only this generator's rate; the run's total becomes the sum")],
         api=True)
async def rate(api: CoordinatorClient, args, console: Console) -> int:
    ok = await api.rate(args.run_id, args.rate, args.generator, by=fleet.who())
    whose = f"generator {args.generator}'s rate" if args.generator else "rate"
    console.print(f"{ok.run_id}: {whose} set to {args.rate:g}/s (epoch {ok.epoch})")
    return 0


@command("ls", help="list runs; search the archive by test, tag, target, verdict, date",
         example="surge ls\nsurge ls --limit 5 --json\n"
                 "surge ls --test checkout --verdict fail --since 7d --tag release-42",
         args=[arg("--limit", type=int, default=20, help="at most this many, newest first"),
               *archive.SEARCH_ARGS], api=True)
async def ls(api: CoordinatorClient, args, console: Console) -> int:
    if archive.searching(args):  # the run archive: runs with their notes (docs/archive.md)
        return await archive.search(api, args, console)
    runs = (await api.list(args.limit)).runs
    if args.json:
        json_out(runs)
    else:
        text.runs_table(console, runs)
    return 0


@command("generators", help="list live generators (with their pool labels)",
         example="surge generators --json\nsurge generators --label room=a --label zone=eu-1",
         args=[arg("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="only generators carrying this label (repeat: all of them)")],
         api=True)
async def generators(api: CoordinatorClient, args, console: Console) -> int:
    wanted = labels.parse(args.label, "--label")
    beats = [b for b in (await api.generators()).generators if labels.matches(b.labels, wanted)]
    if args.json:
        json_out(beats)
    else:
        text.generators_table(console, beats)
    return 0


@command("report", help="show a finished run's report",
         example="surge report 20261130-101500-ab12cd\nsurge report 20261130-101500-ab12cd --html out.html",
         args=[arg("run_id"),
               arg("--html", help="also write it as one self-contained HTML file here")], api=True)
async def report(api: CoordinatorClient, args, console: Console) -> int:
    data = await api.report_bytes(args.run_id)
    r = msgspec.json.decode(data, type=Report)
    if args.html:
        _write_html(args.html, r)
    if args.json:
        sys.stdout.write(data.decode() + "\n")
        return 0
    text.summary(console, r)
    return 0 if r.verdict == "pass" else 1


async def _through_handover(call, limit_s: float):
    """A read that a coordinator handover (no responders for a moment, or a standby's
    not_leader) may miss: asked again until ``limit_s`` (--timeout) has passed."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return await call()
        except (Unavailable, NotLeader):
            if time.monotonic() + 0.25 > deadline:
                raise
            await asyncio.sleep(0.25)


def with_overrides(plan: Plan, *, rate: float | None = None, duration: float | None = None,
                   generators: int | None = None, target: str | None = None,
                   users: int | None = None) -> Plan:
    """The plan with what the command line replaces, checked again like the plan itself."""
    if rate is not None and users is not None:
        raise InvalidPlan("--rate (open model) and --vus (closed model) exclude each other", "vus")
    # --vus replaces the profile, so --duration goes with it (a staged plan takes both)
    plan = loader.with_overrides(plan, rate=rate, duration=None if users else duration,
                                 generators=generators)
    if target is None and users is None:
        return plan
    raw = msgspec.to_builtins(plan)
    if target is not None:
        raw["target"] = check_target(target)
    if users is not None:
        length = plan.duration if plan.duration is not None else sum(
            s.duration for s in plan.stages or plan.user_stages or [])
        for key in ("rate", "stages", "start_rate", "user_stages"):
            raw.pop(key, None)
        raw["users"] = users
        raw["duration"] = duration if duration is not None else length
    return loader.from_obj(raw)


def check_target(url: str) -> str:
    """``http[s]://host[:port]`` (no path), or InvalidPlan naming the target."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidPlan(f"target {url!r} is not http[s]://host[:port]", "target")
    try:
        parts.port
    except ValueError:
        raise InvalidPlan(f"target {url!r} has a bad port", "target") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidPlan(f"target {url!r} must be only an origin (http[s]://host[:port]); "
                          f"paths go in the plan's requests", "target")
    return f"{parts.scheme}://{parts.netloc}"


def _write_html(path: str, r: Report) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(html.render_html(r))


@command("run", help="run a plan and wait for its verdict (exit 0 pass, 1 fail)",
         example="surge run plans/demo.yaml\nsurge run plans/demo.yaml --rate 300 --duration 30s --junit out.xml",
         args=[arg("plan", help="the plan file (YAML or JSON)"),
               arg("--rate", type=float, help="total requests/s (replaces the plan's profile)"),
               arg("--duration", help="e.g. 30s, 2m"),
               arg("--generators", type=int, help="how many generators to use"),
               arg("--target", metavar="URL", help="send to this origin instead of the plan's "
                   "(http[s]://host[:port])"),
               arg("--vus", "--users", dest="vus", type=int, metavar="N",
                   help="closed model: N virtual users for the plan's duration (like k6 --vus)"),
               arg("--report", help="write the JSON report here"),
               arg("--junit", help="write thresholds as JUnit XML here"),
               arg("--html", help="write the report as one self-contained HTML file here"),
               arg("--quiet", action="store_true", help="no live lines, only the summary")])
async def run(args, console: Console) -> int:
    duration = loader.parse_duration(args.duration, "duration") if args.duration else None
    plan = with_overrides(loader.load(args.plan), rate=args.rate, duration=duration,
                          generators=args.generators, target=args.target, users=args.vus)
    async with open_api(args) as api:  # a bad plan is told without NATS
        return await follow_run(api, plan, console, args.report, args.junit, args.quiet, args.html)


async def follow_run(
    api: CoordinatorClient, plan, console: Console, report_path=None, junit_path=None, quiet=False,
    html_path=None, start=None,
) -> int:
    """Start a run, print it live, print and save its report; the verdict is the exit code.

    ``start`` (a coroutine function) starts it another way (``surge test run``)."""
    started = await (start() if start is not None else api.start(plan))
    if started.queued:  # over a quota, or its target system is busy: wait (docs/quotas.md)
        from services.cli import quotas

        started = await quotas.wait_until_started(api, started, console)
    run_id = started.run_id
    ended = asyncio.Event()
    sub = await api.nc.subscribe(subjects.live(run_id))

    loop = asyncio.get_running_loop()
    stopping = False
    interrupted = 0  # the signal that stopped the run: the exit code is 128 + it, not the verdict

    def on_interrupt(sig: int) -> None:
        nonlocal stopping, interrupted
        if stopping:
            raise KeyboardInterrupt
        stopping, interrupted = True, sig
        console.print("[yellow]stopping the run (Ctrl-C again to leave it running)[/]")
        loop.create_task(api.stop(run_id))

    for sig in (signal.SIGINT, signal.SIGTERM):  # a deleted Kubernetes Job sends SIGTERM
        try:
            loop.add_signal_handler(sig, on_interrupt, sig)
        except (NotImplementedError, RuntimeError):
            pass

    # said once Ctrl-C stops the run: a signal right after this line must not kill us
    console.print(
        f"run [cyan]{run_id}[/] started: {plan.name} → {plan.target}, "
        f"{len(started.generators)} generator(s), ends in "
        f"{started.end_at - time.time():.0f}s  (stop: surge stop {run_id})",
        highlight=False,
    )

    async def read_live() -> None:
        async for msg in sub.messages:
            try:
                snap = _live_decoder.decode(msg.data)
            except msgspec.DecodeError:
                continue
            if snap.final:
                ended.set()
                return
            if not quiet:
                console.print(text.live_line(snap, plan), highlight=False)

    async def poll_state() -> None:
        """In case the final snapshot is missed (a NATS blip), ask now and then."""
        while not ended.is_set():
            await asyncio.sleep(2.0)
            if api.nc.is_closed:  # reconnecting gave up (connection.RECONNECT_FOR_S)
                ended.set()
                return
            try:
                record = await api.get(run_id)
            except Exception:
                continue
            if record.state in ENDED_STATES:
                ended.set()

    tasks = [asyncio.create_task(read_live()), asyncio.create_task(poll_state())]
    await ended.wait()
    for t in tasks:
        t.cancel()
    if api.nc.is_closed:
        raise Unavailable(f"lost NATS while following run {run_id}; the run goes on without this "
                          f"shell: `surge report {run_id}` once it ends, `surge stop {run_id}` to stop it")
    await sub.unsubscribe()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.remove_signal_handler(sig)
        except (NotImplementedError, RuntimeError):
            pass
    data = await _through_handover(lambda: api.report_bytes(run_id), api.timeout_s)
    r = msgspec.json.decode(data, type=Report)
    text.summary(console, r)
    if report_path:
        with open(report_path, "wb") as f:
            f.write(data)
    if junit_path:
        with open(junit_path, "w") as f:
            f.write(junit.junit(r))
    if html_path:
        _write_html(html_path, r)
    if interrupted:  # a run cut short passed nothing: CI must not read its verdict as a pass
        return 128 + interrupted
    return 0 if r.verdict == "pass" else 1


@command("import", help="turn a HAR, Postman collection, curl command, JMeter plan or OpenAPI spec into a plan",
         example="surge import har session.har -o plan.yaml --rate 50\n"
                 "surge import curl 'curl https://shop.test/api' --target http://127.0.0.1:8080",
         args=[arg("kind", choices=["har", "postman", "curl", "jmx", "openapi"]),
               arg("source", help="the file (for curl: the command, or a file of commands)"),
               arg("-o", "--output", help="write the plan here (default: stdout)"),
               arg("--target", help="send to this origin instead (http[s]://host:port)"),
               arg("--rate", type=float, help="open model: total arrivals/s"),
               arg("--users", type=int, help="closed model: virtual users (default 1)"),
               arg("--duration", help="e.g. 30s, 2m"),
               arg("--name", help="the plan's name"),
               arg("--origin", help="har: keep the requests to this origin (default: the most used)"),
               arg("--environment", help="postman: an environment file (its variables)")])
def import_(args, console: Console) -> int:
    from services.cli import importers

    return importers.run(args, console)
