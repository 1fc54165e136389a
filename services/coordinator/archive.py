"""The run archive on the coordinator: annotations, search, baselines, retention, files.

KV ``surge_archive`` holds each run's annotations (key: run id) and each test's
baseline (key ``baseline.<test slug>``). When a run of a catalogue test ends, ``against``
gathers its test and the baseline's report, and the run's report is built with the
comparison and the plan's relative limits (``RunAggregate.report``, baseline.py). The leader also applies the retention policy
(``SURGE_RETAIN_RUNS``, ``SURGE_RETAIN_DAYS``): baselines are always kept.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError, ObjectNotFoundError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.archive import (
    Annotations,
    ArchivedRun,
    Baseline,
    BaselineSet,
    Imported,
    Note,
    RunAnnotate,
    RunBundle,
    RunConclusion,
    RunSearch,
    RunSearchResult,
)
from schemas.control import ENDED_STATES, RunRecord, RunRef
from schemas.errors import BadRequest, Conflict, InvalidPlan, NotFound
from schemas.stats import Report
from services.common import bus
from services.coordinator import baseline, firing
from services.coordinator.catalogue import slug, target_system
from services.plan import loader

if TYPE_CHECKING:
    from services.coordinator.service import Service

log = structlog.get_logger(__name__)
_annotations = msgspec.json.Decoder(Annotations)
_baseline = msgspec.json.Decoder(Baseline)
_record = msgspec.json.Decoder(RunRecord)
_report = msgspec.json.Decoder(Report)
WRITE_TRIES = 10


def when(value: str | float | None, field: str, now: float) -> float | None:
    """ISO 8601 / unix seconds, or a duration meaning that long ago (``7d``)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return now - float(loader.parse_duration(value, field))
        except (InvalidPlan, ValueError):
            pass
    try:
        return firing.parse_at(value, "UTC", now)
    except BadRequest:
        raise BadRequest(f"not a time or a duration ago: {value!r}", field) from None


class Archive:
    def __init__(self, svc: Service, kv: KeyValue) -> None:
        self.svc = svc
        self.kv = kv
        self._pruned_at = 0.0

    # --- storage ------------------------------------------------------------------
    async def annotations(self, run_id: str) -> tuple[Annotations | None, int]:
        try:
            entry = await self.kv.get(run_id)
        except KeyNotFoundError:
            return None, 0
        return _annotations.decode(entry.value), entry.revision

    async def baseline_of(self, test: str) -> Baseline | None:
        try:
            b = _baseline.decode((await self.kv.get(f"baseline.{slug(test)}")).value)
        except KeyNotFoundError:
            return None
        return b if b.run_id and b.test == test else None

    async def _records(self, by_arrival: bool = False) -> list[RunRecord]:
        """Every run record, newest first: by start time, or (``by_arrival``) by when the
        record was last written here, so a run imported from a file counts as just archived."""
        try:
            keys = await bus.kv_keys(self.svc.runs_kv)
        except NoKeysError:
            keys = []
        records: dict[str, tuple[int, RunRecord]] = {}
        for key in keys:
            try:
                entry = await self.svc.runs_kv.get(key)
                records[key] = (entry.revision or 0, _record.decode(entry.value))
            except (KeyNotFoundError, msgspec.DecodeError):
                continue
        for run in self.svc.runs.values():
            records[run.run_id] = (1 << 62, run.record)  # live: newer than anything stored
        order = (lambda rr: rr[0]) if by_arrival else (lambda rr: rr[1].created_at)
        return [r for _, r in sorted(records.values(), key=order, reverse=True)]

    async def _all_annotations(self) -> dict[str, Annotations]:
        try:
            keys = await bus.kv_keys(self.kv)
        except NoKeysError:
            return {}
        out = {}
        for key in keys:
            if key.startswith("baseline."):
                continue
            a, _ = await self.annotations(key)
            if a is not None:
                out[key] = a
        return out

    async def _baselines(self) -> set[str]:
        try:
            keys = [k for k in await bus.kv_keys(self.kv) if k.startswith("baseline.")]
        except NoKeysError:
            return set()
        out = set()
        for key in keys:
            try:
                b = _baseline.decode((await self.kv.get(key)).value)
            except (KeyNotFoundError, msgspec.DecodeError):
                continue
            if b.run_id:
                out.add(b.run_id)
        return out

    # --- API ------------------------------------------------------------------------
    async def run_annotate(self, ask: RunAnnotate) -> Annotations:
        await self.svc._record(ask.run_id)  # not_found for a run nobody knows
        now = time.time()
        for _ in range(WRITE_TRIES):
            current, revision = await self.annotations(ask.run_id)
            a = current or Annotations(run_id=ask.run_id)
            notes = list(a.notes) + ([Note(ask.author, now, ask.note)] if ask.note else [])
            conclusion = a.conclusion
            if ask.conclusion is not None:
                conclusion = RunConclusion(ask.conclusion, ask.conclusion_text, ask.author, now)
            tags = [t for t in dict.fromkeys([*a.tags, *ask.tags]) if t not in ask.untag]
            links = list(dict.fromkeys([*a.links, *ask.links]))
            new = Annotations(run_id=ask.run_id, notes=notes, conclusion=conclusion, tags=tags,
                              links=links)
            try:
                if revision:
                    await self.kv.update(ask.run_id, msgspec.json.encode(new), last=revision)
                else:
                    await self.kv.create(ask.run_id, msgspec.json.encode(new))
            except KeyWrongLastSequenceError:
                continue  # annotated by someone else meanwhile: apply ours on top
            what = []
            if ask.note:
                what.append("a note")
            if ask.conclusion:
                what.append(f"conclusion {ask.conclusion}")
            if ask.tags or ask.untag or ask.links:
                what.append("tags/links")
            await self._event(ask.run_id, f"{ask.author} added {', '.join(what) or 'nothing'}")
            return new
        raise Conflict(f"run {ask.run_id} is being annotated by others; try again")

    async def run_search(self, q: RunSearch) -> RunSearchResult:
        now = time.time()
        since, until = when(q.since, "since", now), when(q.until, "until", now)
        notes = await self._all_annotations()
        baselines = await self._baselines()
        out = []
        for r in await self._records():
            a = notes.get(r.run_id)
            system = target_system(r.plan.target)
            if q.test is not None and r.test != q.test:
                continue
            if q.tag is not None and (a is None or q.tag not in a.tags):
                continue
            if q.target and q.target not in system and q.target not in r.plan.target:
                continue
            if q.verdict is not None and r.verdict != q.verdict:
                continue
            if q.conclusion is not None and (a is None or a.conclusion is None
                                             or a.conclusion.verdict != q.conclusion):
                continue
            if since is not None and r.created_at < since or until is not None and r.created_at > until:
                continue
            if q.text:
                text = " ".join([*(n.text for n in a.notes), a.conclusion.text if a.conclusion else ""]) \
                    if a else ""
                if q.text.lower() not in text.lower():
                    continue
            out.append(ArchivedRun(record=r, target_system=system, annotations=a,
                                   baseline=r.run_id in baselines))
            if len(out) >= q.limit:
                break
        return RunSearchResult(runs=out)

    async def test_baseline(self, ask: BaselineSet) -> Baseline:
        await self.svc.catalogue.latest(ask.test)
        if ask.run_id is not None:
            record = await self.svc._record(ask.run_id)
            if record.test != ask.test:
                raise BadRequest(f"run {ask.run_id} is not a run of test {ask.test!r}", "run_id")
            if record.state not in ENDED_STATES:
                raise Conflict(f"run {ask.run_id} is {record.state}; a baseline has ended")
            try:
                await self.svc.reports.get(ask.run_id)
            except ObjectNotFoundError:
                raise Conflict(f"run {ask.run_id} has no report") from None
        b = Baseline(test=ask.test, run_id=ask.run_id, author=ask.author, at=time.time())
        await self.kv.put(f"baseline.{slug(ask.test)}", msgspec.json.encode(b))
        await self._event(ask.run_id or "none", f"{ask.author} set the baseline of {ask.test} "
                                                f"to {ask.run_id or 'none'}")
        return b

    async def run_export(self, ref: RunRef) -> RunBundle:
        record = await self.svc._record(ref.run_id)
        try:
            report = _report.decode((await self.svc.reports.get(ref.run_id)).data)
        except ObjectNotFoundError:
            report = None
        a, _ = await self.annotations(ref.run_id)
        return RunBundle(record=record, report=report, annotations=a)

    async def run_import(self, bundle: RunBundle) -> Imported:
        run_id = bundle.record.run_id
        if bundle.record.state not in ENDED_STATES:
            raise BadRequest(f"run {run_id} is {bundle.record.state}: only ended runs are imported",
                             "record.state")
        if bundle.report is not None and bundle.report.run_id != run_id:
            raise BadRequest("the report is of another run", "report.run_id")
        try:
            await self.svc.runs_kv.create(run_id, msgspec.json.encode(bundle.record))
        except KeyWrongLastSequenceError:
            raise Conflict(f"run {run_id} exists here", "record.run_id") from None
        if bundle.report is not None:
            await self.svc.reports.put(run_id, msgspec.json.encode(bundle.report))
        if bundle.annotations is not None:
            await self.kv.put(run_id, msgspec.json.encode(
                msgspec.structs.replace(bundle.annotations, run_id=run_id)))
        await self._event(run_id, "imported from a file")
        return Imported(run_id=run_id)

    # --- hooks -------------------------------------------------------------------------
    async def against(self, record: RunRecord) -> baseline.Against | None:
        """What a run's report is judged against, gathered before it is built: its test
        and version and the test's baseline run with its report; None for a run of no test."""
        if record.test is None:
            return None
        b = await self.baseline_of(record.test)
        base = None
        if b is not None and b.run_id is not None and b.run_id != record.run_id:
            try:
                base = _report.decode((await self.svc.reports.get(b.run_id)).data)
            except (ObjectNotFoundError, msgspec.DecodeError) as exc:
                log.warning("baseline report unreadable", baseline=b.run_id, error=str(exc))
        return baseline.Against(test=record.test, test_version=record.test_version,
                                base_run=b.run_id if base is not None else None, base=base)

    async def tick(self) -> None:
        """Retention: drop ended runs beyond the count or older than the age kept."""
        c = self.svc.config
        now = time.time()
        if (not c.retain_runs and not c.retain_days) or now - self._pruned_at < c.retention_every_s:
            return
        self._pruned_at = now
        keep = await self._baselines()
        ended = [r for r in await self._records(by_arrival=True) if r.state in ENDED_STATES]
        doomed = []
        for i, r in enumerate(ended):  # newest first
            too_many = c.retain_runs and i >= c.retain_runs
            too_old = c.retain_days and r.created_at < now - c.retain_days * 86400
            if (too_many or too_old) and r.run_id not in keep:
                doomed.append(r.run_id)
        for run_id in doomed:
            await self.forget(run_id)
        if doomed:
            log.info("retention removed runs", count=len(doomed))

    async def forget(self, run_id: str) -> None:
        await self.svc.store.forget_log(run_id)  # kept after the report for amendments
        for what in (self.svc.runs_kv.purge(run_id), self.kv.purge(run_id)):
            try:
                await what
            except Exception as exc:
                log.warning("retention: could not remove", run_id=run_id, error=str(exc))
        try:
            await self.svc.reports.delete(run_id)
        except ObjectNotFoundError:
            pass
        except Exception as exc:
            log.warning("retention: could not remove the report", run_id=run_id, error=str(exc))

    async def _event(self, run_id: str, text: str) -> None:
        try:
            await self.svc.publish(subjects.archive_events(run_id),
                                   {"run_id": run_id, "at": time.time(), "event": text})
        except Exception as exc:
            log.warning("archive event not published", error=str(exc))
