"""``surge approve`` and ``surge queue``: runs over a quota, and runs waiting their turn.

docs/quotas.md. ``surge run``/``surge test run`` wait here (``wait_until_started``) when
the coordinator answers that a run is queued.
"""

from __future__ import annotations

import asyncio
import time

from rich.console import Console

from schemas.control import RunStarted
from schemas.quotas import QueuedRun
from schemas.errors import Conflict, NotFound
from services.cli.registry import arg, command
from services.cli.shared import author, listing
from services.common.client import CoordinatorClient

POLL_S = 1.0


async def wait_until_started(api: CoordinatorClient, started: RunStarted, console: Console) -> RunStarted:
    """Print why a run waits; return once it runs (raise Conflict when it is denied)."""
    console.print(f"run [cyan]{started.run_id}[/] is {started.queued}", highlight=False)
    console.print(f"  (an approver: surge approve {started.run_id}; the queue: surge queue)",
                  highlight=False)
    seen = 1  # the first decision is the one just printed
    while True:
        await asyncio.sleep(POLL_S)
        entry = next((e for e in (await api.queue()).runs if e.run_id == started.run_id), None)
        if entry is not None:
            for d in entry.decisions[seen:]:
                console.print(f"  {d.what} ({d.who})", highlight=False)
            seen = max(seen, len(entry.decisions))
            if entry.state in ("denied", "failed"):
                last = entry.decisions[-1]
                raise Conflict(f"run {started.run_id} {last.what} ({last.who})")
            if entry.state != "started":
                continue
        try:
            record = await api.get(started.run_id)
        except NotFound:
            continue
        return RunStarted(run_id=record.run_id, start_at=record.start_at, end_at=record.end_at,
                          target_rps=record.target_rps, generators=record.generators,
                          test=record.test, test_version=record.test_version)


@command("approve", help="let a run over its target system's quota start (the approver role)",
         example="surge approve 20261130-101500-ab12cd --user approver --password-file .surge/secrets/approver.password\n"
                 "surge approve 20261130-101500-ab12cd --deny --reason 'not during the sale'",
         args=[arg("run_id"), arg("--deny", action="store_true", help="refuse it instead"),
               arg("--reason", default="", help="why (kept with the decision)")], api=True)
async def approve(api: CoordinatorClient, args, console: Console) -> int:
    entry = await api.approve(args.run_id, not args.deny, args.reason, author())
    console.print(f"{entry.run_id}: {entry.decisions[-1].what} by {entry.decisions[-1].who}",
                  highlight=False)
    return 0


@command("queue", help="runs waiting for approval or for their target system, and the decisions",
         example="surge queue\nsurge queue --json", api=True)
async def queue(api: CoordinatorClient, args, console: Console) -> int:
    return listing(console, args.json, (await api.queue()).runs, "queued run",
                   ("run", "test", "target system", "state", "asked by", "why", "decisions"), _queue_row)


def _queue_row(e: QueuedRun) -> tuple[str, ...]:
    test = f"{e.test} v{e.test_version}" if e.test else e.plan.name
    decisions = "; ".join(f"{time.strftime('%H:%M:%S', time.localtime(d.at))} {d.what} ({d.who})"
                          for d in e.decisions)
    return (e.run_id, test, e.target_system, e.state.replace("_", " "), e.requested_by,
            "; ".join(e.reasons) or "-", decisions)
