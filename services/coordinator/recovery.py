"""Taking over unfinished runs after a change of leader.

A new leader rebuilds each run from what is durable: the run record (KV
``surge_runs``), the assignments (KV ``surge_assign``) and the run log (stream
``SURGE_RUNLOG``: every interval a leader acknowledged, every run event). Intervals
no leader acknowledged are still in the generators' outboxes and arrive once the
new leader answers on ``surge.stats.>``; the aggregate counts each (generator,
seq) once, so nothing is counted twice or lost.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import msgspec
import structlog
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError, NoKeysError

from schemas import subjects
from schemas.control import ENDED_STATES, Assignment, Lease, RunEvent, RunRecord
from schemas.stats import IntervalStats
from services.plan import profile
from services.coordinator.runs import FINAL_GRACE_S, Run

if TYPE_CHECKING:
    from services.coordinator.service import Service

log = structlog.get_logger(__name__)

_record = msgspec.json.Decoder(RunRecord)
_interval = msgspec.json.Decoder(IntervalStats)
_event = msgspec.json.Decoder(RunEvent)
_assignment = msgspec.json.Decoder(Assignment)


async def unfinished_records(svc: Service) -> list[RunRecord]:
    try:
        keys = await svc.runs_kv.keys()
    except NoKeysError:  # an empty bucket; anything else (a timeout) fails the recovery
        return []
    records = []
    for key in keys:
        try:
            record = _record.decode((await svc.runs_kv.get(key)).value)
        except (KeyNotFoundError, msgspec.DecodeError, UnicodeDecodeError):
            continue
        if record.state not in ENDED_STATES:
            records.append(record)
    return records


async def recover_runs(svc: Service, previous: Lease | None) -> list[Run]:
    """Every unfinished run, or an exception: the caller retries the whole recovery
    (NATS trouble is the only way to fail here; bad entries are skipped inside)."""
    return [await recover_run(svc, record, previous) for record in await unfinished_records(svc)]


async def replay(svc: Service, run_id: str) -> list:
    """Every message of one run's log, oldest first."""
    subject = subjects.runlog_of_run(run_id)
    info = await svc.js.stream_info(subjects.RUNLOG_STREAM, subjects_filter=subject)
    total = sum((info.state.subjects or {}).values())
    if not total:
        return []
    sub = await svc.js.subscribe(
        subject, stream=subjects.RUNLOG_STREAM, ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    out = []
    try:
        while len(out) < total:
            msg = await sub.next_msg(timeout=5.0)
            out.append(msg)
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out


async def recover_run(svc: Service, record: RunRecord, previous: Lease | None) -> Run:
    run = Run(svc, record)
    rlog = run.log
    intervals = events = 0
    for msg in await replay(svc, record.run_id):
        try:
            if msg.subject == subjects.runlog_event(record.run_id):
                e = _event.decode(msg.data)
                run.agg.note(e.t, e.event, gap=e.gap)
                events += 1
            else:
                stats = _interval.decode(msg.data)
                run.agg.add(stats)
                run.durable.add((stats.generator_id, stats.seq))
                intervals += 1
        except Exception as exc:  # one bad entry must not cost the rest of the run
            rlog.warning("run log entry skipped", error=str(exc))
    run.lost = set(run.agg.gens) - set(run.shares)
    run.quiet_below = _published_before(run, previous)
    if record.state == "stopping":
        run.stop_s = profile.duration(record.profile)
        run.finish_by = time.time() + record.plan.timeout + FINAL_GRACE_S
    await _reconcile_assignments(svc, run)
    holder = previous.holder if previous else "nobody"
    now_s = run.second_now()
    if previous is not None:
        for seq in range(max(int(previous.renewed_at - record.start_at), 0), now_s + 1):
            run.agg.gaps.add(seq)
    await run._event(f"coordinator takeover: {svc.id} took over from {holder}", gap=True)
    rlog.info("run recovered", intervals=intervals, events=events, epoch=run.record.epoch,
              generators=sorted(run.shares), quiet_below=run.quiet_below)
    return run


def _published_before(run: Run, previous: Lease | None) -> int:
    """The first second the previous leader may not have published as a live snapshot."""
    r = run.record
    last = math.ceil(profile.duration(r.profile))
    merge_wait = run.svc.config.merge_wait_s
    renewed = previous.renewed_at if previous else 0.0
    seq = 0
    while seq < last:
        complete = all((g, seq) in run.durable for g in r.generators)
        timed_out = r.start_at + seq + 1 + merge_wait <= renewed
        if not (complete or timed_out):
            break
        seq += 1
    return seq


async def _reconcile_assignments(svc: Service, run: Run) -> None:
    """Make the assignments match the record, whatever the old leader left half done.

    A generator holding a live assignment of this run stays a member (a hot add the
    record had not caught up with); a member without the record's epoch is rewritten.
    """
    r = run.record
    try:
        keys = await svc.assignments.keys()
    except NoKeysError:
        keys = []
    epochs: dict[str, int] = {}
    for gid in keys:
        try:
            a = _assignment.decode((await svc.assignments.get(gid)).value)
        except (KeyNotFoundError, msgspec.DecodeError, UnicodeDecodeError, TypeError):
            continue
        if a.run_id == r.run_id and not a.stop:
            epochs[gid] = a.epoch
    members = set(run.shares) | set(epochs)
    top = max([r.epoch, *epochs.values()])
    if members == set(run.shares) and all(epochs.get(g) == r.epoch for g in members):
        return  # consistent: nothing to write, no generator disturbed
    for gid in members - set(run.shares):
        run.shares[gid] = 0.0
    run.record = msgspec.structs.replace(r, epoch=top)
    if r.state == "stopping":
        run.record = msgspec.structs.replace(run.record, epoch=top + 1)
        await run._assign_all(stop=True)
        await run._save()
    else:
        await run._reshare()
