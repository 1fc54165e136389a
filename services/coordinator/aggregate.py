"""Exact merging of every generator's interval stats into seconds, totals and a report.

Pure (no NATS, no clock). Histograms are added count by count, so every percentile
in a snapshot or report is the percentile of all requests together, never an
average of percentiles. Each (generator, seq) is counted once, however often a
generator resends it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import numpy as np

from schemas.control import Segment
from schemas.host import HostsReport
from schemas.plan import Plan
from schemas.stats import (
    GeneratorTotals,
    IntervalStats,
    LiveGenerator,
    LiveRequest,
    LiveSnapshot,
    MergedSecond,
    Report,
    RequestTotals,
    ThresholdResult,
    TimelineEntry,
)
from services.common import histogram
from services.plan import profile
from services.plan.names import reported_names
from services.coordinator import baseline, thresholds
from services.coordinator.hosts import seconds_of


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0
    late: int = 0
    dropped: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def add(self, count: int, errors: dict[str, int], late: int, dropped: int) -> None:
        self.requests += count
        self.late += late
        self.dropped += dropped
        for kind, n in errors.items():
            self.errors += n
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + n


@dataclass
class _NameTotals:
    counts: _Counts = field(default_factory=_Counts)
    latency: np.ndarray = field(default_factory=histogram.zeros)
    service: np.ndarray = field(default_factory=histogram.zeros)


@dataclass
class _GenTotals:
    counts: _Counts = field(default_factory=_Counts)
    intended: float = 0.0  # arrivals its intervals were to send (IntervalStats.target)
    sent: int = 0
    seconds: int = 0


@dataclass
class _GenSecond:
    counts: _Counts
    intended: float  # arrivals it was to send in this second (IntervalStats.target)
    sent: int
    in_flight: int
    p99_ms: float | None  # from its interval's own counts: no histogram kept per generator


@dataclass
class _Second:
    seq: int
    # per name: its counts and latency/service counts arrays, folded into the run's
    # totals when the second closes (one array add per name per second, not per interval)
    names: dict[str, _NameTotals] = field(default_factory=dict)
    gens: dict[str, _GenSecond] = field(default_factory=dict)


class RunAggregate:
    """Everything measured in one run, as it arrives.

    An interval costs its decoding and a few sparse adds (its non-zero buckets) per
    request name; nothing in it grows with the number of generators.
    """

    def __init__(self, run_id: str, plan: Plan, start_at: float) -> None:
        self.run_id = run_id
        self.plan = plan
        self.start_at = start_at
        self.seen: set[tuple[str, int]] = set()
        self.finals: set[str] = set()
        self.names: dict[str, _NameTotals] = {}  # closed seconds and late intervals
        self.gens: dict[str, _GenTotals] = {}
        self.open: dict[int, _Second] = {}
        self.timeline: dict[int, TimelineEntry] = {}
        self.events: dict[int, list[str]] = {}
        self.gaps: set[int] = set()
        self.newest_seq = -1  # the latest second any generator has reported

    # --- input -----------------------------------------------------------------
    def add(self, s: IntervalStats) -> bool:
        """Take one interval; False if it was already counted. Raises on bad histograms."""
        key = (s.generator_id, s.seq)
        if key in self.seen:
            return False
        decoded = {
            name: (histogram.decode_sparse(r.latency), histogram.decode_sparse(r.service))
            for name, r in s.requests.items()
        }  # decode everything first: a bad histogram leaves no partial counts behind
        for name, (lat, svc) in decoded.items():
            limit = s.requests[name].count
            if lat.total > limit or svc.total > limit:
                raise histogram.HistogramDecodeError(
                    f"requests.{name}: histogram holds more values than its count"
                )
        self.seen.add(key)
        if s.seq > self.newest_seq:
            self.newest_seq = s.seq
        if s.final:
            self.finals.add(s.generator_id)
        gen = self.gens.get(s.generator_id)
        if gen is None:
            gen = self.gens[s.generator_id] = _GenTotals()
        gen.intended += s.target
        gen.sent += s.sent
        gen.seconds += 1
        second = self.open.get(s.seq)
        if second is None and s.seq not in self.timeline:
            second = self.open[s.seq] = _Second(s.seq)
        gen_counts = _Counts()
        for name, r in s.requests.items():
            lat, svc = decoded[name]
            gen.counts.add(r.count, r.errors, r.late, r.dropped)
            gen_counts.add(r.count, r.errors, r.late, r.dropped)
            into = self.names if second is None else second.names
            totals = into.get(name)
            if totals is None:
                totals = into[name] = _NameTotals()
            totals.counts.add(r.count, r.errors, r.late, r.dropped)
            histogram.add_sparse(totals.latency, lat)
            histogram.add_sparse(totals.service, svc)
        if second is not None:
            p99 = histogram.sparse_percentile_ms([lat for lat, _ in decoded.values()], 99.0)
            second.gens[s.generator_id] = _GenSecond(gen_counts, s.target, s.sent, s.in_flight, p99)
        else:
            self._amend(s.seq, gen_counts)
        return True

    def add_merged(self, m: MergedSecond) -> bool:
        """Take a merger's second: its rows (histograms stripped) and their summed
        histograms. False if every row was counted already (a partial sent again).

        Rows are unique across mergers (each took its intervals only after the run log
        said they were new); a partial mixing counted and new rows (possible after a change
        of leader, which replays the run log) cannot be split and is left to the sweep of
        the run log at the end of the run.
        """
        counted = sum((r.generator_id, r.seq) in self.seen for r in m.rows)
        if counted == len(m.rows):
            return False
        if counted:  # after a takeover: the run log has them all; the end-of-run sweep
            return False  # (Run._sweep_run_log) counts the new rows, exactly once
        decoded = {name: (histogram.decode_sparse(h.latency), histogram.decode_sparse(h.service))
                   for name, h in m.names.items()}
        for row in m.rows:
            self.add(row)
        second = self.open.get(m.seq)
        into = self.names if second is None else second.names
        for name, (lat, svc) in decoded.items():
            totals = into.get(name)
            if totals is None:
                totals = into[name] = _NameTotals()
            histogram.add_sparse(totals.latency, lat)
            histogram.add_sparse(totals.service, svc)
        if second is not None:
            for gid, p99 in m.p99_ms.items():
                g = second.gens.get(gid)
                if g is not None:
                    g.p99_ms = p99
        return True

    def _amend(self, seq: int, counts: _Counts) -> None:
        """Counts that arrived after their second was published still belong to it."""
        entry = self.timeline.get(seq)
        if entry is None:
            return
        self.timeline[seq] = msgspec.structs.replace(
            entry,
            requests=entry.requests + counts.requests,
            errors=entry.errors + counts.errors,
            rps=float(entry.requests + counts.requests),
            late=entry.late + counts.late,
            dropped=entry.dropped + counts.dropped,
        )

    def note(self, seq: int, event: str, gap: bool = False) -> None:
        self.events.setdefault(seq, []).append(event)
        if gap:
            self.gaps.add(seq)

    def reported_count(self, seq: int) -> int:
        second = self.open.get(seq)
        return len(second.gens) if second else 0

    def reported(self, seq: int) -> set[str]:
        second = self.open.get(seq)
        return set(second.gens) if second else set()

    def is_closed(self, seq: int) -> bool:
        return seq in self.timeline

    # --- output ------------------------------------------------------------------
    def close_second(
        self,
        seq: int,
        *,
        state: str,
        profile_: list[Segment],
        lost: set[str],
        final: bool = False,
    ) -> LiveSnapshot:
        """Publish second ``seq``: fold it into the timeline and return its snapshot."""
        second = self.open.pop(seq, None) or _Second(seq)
        target_rps = profile.arrivals(profile_, seq, seq + 1)
        total = _Counts()
        per_request: dict[str, LiveRequest] = {}
        latency = None
        for name, t in sorted(second.names.items()):
            counts = t.counts
            total.add(counts.requests, counts.error_kinds, counts.late, counts.dropped)
            pv = _pcts(t.latency)
            per_request[name] = LiveRequest(
                rps=float(counts.requests), errors=counts.errors,
                p50_ms=pv[0], p90_ms=pv[1], p99_ms=pv[2],
            )
            self._fold(name, t)
            latency = t.latency.copy() if latency is None else latency + t.latency
        generators: dict[str, LiveGenerator] = {}
        for gid, g in sorted(second.gens.items()):
            generators[gid] = LiveGenerator(
                target_rps=g.intended,
                rps=float(g.counts.requests),
                sent=g.sent,
                late=g.counts.late,
                dropped=g.counts.dropped,
                p99_ms=g.p99_ms,
                behind=is_behind(g.intended, g.sent, g.counts.late, g.counts.dropped),
                lost=gid in lost,
            )
        for gid in sorted(lost - set(generators)):
            generators[gid] = LiveGenerator(
                target_rps=0.0, rps=0.0, sent=0, late=0, dropped=0, p99_ms=None,
                behind=False, lost=True,
            )
        if latency is None:
            p50 = p90 = p99 = max_ms = None
        else:
            p50, p90, p99 = _pcts(latency)
            top = histogram.percentiles_of(latency, [100.0])
            max_ms = top[0] / 1000.0 if top else None
        events = self.events.get(seq, [])
        self.timeline[seq] = TimelineEntry(
            t=seq,
            at=self.start_at + seq,
            requests=total.requests,
            errors=total.errors,
            rps=float(total.requests),
            target_rps=round(target_rps, 3),
            p50_ms=p50,
            p99_ms=p99,
            generators=len(second.gens),
            late=total.late,
            dropped=total.dropped,
            gap=seq in self.gaps,
            events=list(events),
        )
        all_totals = self.totals_counts()
        return LiveSnapshot(
            run_id=self.run_id,
            plan_name=self.plan.name,
            state=state,
            seq=seq,
            at=self.start_at + seq,
            elapsed_s=float(seq + 1),
            duration_s=profile.duration(profile_),
            target_rps=round(target_rps, 3),
            rps=float(total.requests),
            requests=total.requests,
            errors=total.errors,
            error_rate=total.errors / total.requests if total.requests else 0.0,
            late=total.late,
            dropped=total.dropped,
            in_flight=sum(g.in_flight for g in second.gens.values()),
            p50_ms=p50,
            p90_ms=p90,
            p99_ms=p99,
            max_ms=max_ms,
            total_requests=all_totals.requests,
            total_errors=all_totals.errors,
            per_request=per_request,
            generators=generators,
            events=list(events),
            final=final,
        )

    def _fold(self, name: str, t: _NameTotals) -> None:
        """A closed second's counts of one name join the run's totals."""
        totals = self.names.get(name)
        if totals is None:
            self.names[name] = t
            return
        totals.counts.add(t.counts.requests, t.counts.error_kinds, t.counts.late, t.counts.dropped)
        totals.latency += t.latency
        totals.service += t.service

    def _all_names(self) -> dict[str, list[_NameTotals]]:
        """Per name: its totals of closed seconds and its parts in still-open seconds."""
        out: dict[str, list[_NameTotals]] = {name: [t] for name, t in self.names.items()}
        for second in self.open.values():
            for name, t in second.names.items():
                out.setdefault(name, []).append(t)
        return out

    def totals_counts(self) -> _Counts:
        total = _Counts()
        for parts in self._all_names().values():
            for t in parts:
                total.add(t.counts.requests, t.counts.error_kinds, t.counts.late, t.counts.dropped)
        return total

    def _totals(self, duration_s: float) -> tuple[RequestTotals, dict[str, RequestTotals],
                                                  np.ndarray, np.ndarray]:
        """The whole run's and each request's totals over ``duration_s`` (closed seconds
        and late intervals), and the whole run's latency and service-time counts."""
        duration_s = max(duration_s, 1e-9)
        all_lat, all_svc = histogram.zeros(), histogram.zeros()
        per_name: dict[str, RequestTotals] = {}
        for name, parts in sorted(self._all_names().items()):
            t = parts[0]
            if len(parts) > 1:
                t = _NameTotals()
                for part in parts:
                    c = part.counts
                    t.counts.add(c.requests, c.error_kinds, c.late, c.dropped)
                    t.latency += part.latency
                    t.service += part.service
            all_lat += t.latency
            all_svc += t.service
            per_name[name] = _request_totals(t.counts, t.latency, t.service, duration_s)
        for name in reported_names(self.plan):  # a name that never ran has its row of zeros
            per_name.setdefault(name, thresholds.NO_DATA)
        totals = _request_totals(self.totals_counts(), all_lat, all_svc, duration_s)
        return totals, per_name, all_lat, all_svc

    def failing_so_far(self, seconds: int) -> list[ThresholdResult]:
        """The plan's limits that the run's first ``seconds`` seconds already break
        (``abort_on_fail``); a limit with no data yet is not judged."""
        totals, per_name, _, _ = self._totals(float(seconds))
        results = thresholds.evaluate(self.plan.thresholds, totals, per_name)
        return [r for r in results if not r.ok and r.reason is None]

    def report(
        self, *, state: str, ended_at: float, profile_: list[Segment], duration_s: float,
        aborted: bool = False, hosts: Callable[[int], HostsReport | None] | None = None,
        against: baseline.Against | None = None,
    ) -> Report:
        """The final report, whole: nothing changes it after this (the verdict included).

        ``hosts(seconds)`` gives its hosts section for the run's seconds (hosts.py);
        ``against``, for a run of a catalogue test, its test and version, the change
        against the test's baseline and the results of the plan's relative limits, which
        can fail the verdict (baseline.py).
        """
        duration_s = max(duration_s, 1e-9)
        totals, per_name, all_lat, all_svc = self._totals(duration_s)
        gens = {
            gid: GeneratorTotals(
                requests=g.counts.requests,
                errors=g.counts.errors,
                target_rps=round(g.intended / max(g.seconds, 1), 3),
                achieved_rps=round(g.counts.requests / max(g.seconds, 1), 3),
                late=g.counts.late,
                dropped=g.counts.dropped,
                seconds=g.seconds,
            )
            for gid, g in sorted(self.gens.items())
        }
        results = thresholds.evaluate(self.plan.thresholds, totals, per_name)
        # a failed run, or one stopped by a failing limit (abort_on_fail), fails whatever
        # the rest of it did
        verdict = "fail" if state == "failed" or aborted else thresholds.verdict(results)
        cmp = None
        if against is not None:
            cmp, relative = baseline.section(against, self.plan.thresholds.relative, totals, per_name)
            results = [*results, *relative]
            if any(not r.ok for r in relative):
                verdict = "fail"
        events = [f"t={seq}s {e}" for seq in sorted(self.events) for e in self.events[seq]]
        return Report(
            run_id=self.run_id,
            plan_name=self.plan.name,
            state=state,
            started_at=self.start_at,
            ended_at=ended_at,
            duration_s=round(duration_s, 3),
            target_rps=round(profile.mean_rate(profile_), 3),
            profile=profile_,
            totals=totals,
            requests=per_name,
            generators=gens,
            timeline=[self.timeline[k] for k in sorted(self.timeline)],
            thresholds=results,
            verdict=verdict,  # type: ignore[arg-type]
            latency_histogram=histogram.encode_counts(all_lat),
            service_histogram=histogram.encode_counts(all_svc),
            events=events,
            model=self.plan.model,  # closed: the plan's users looped; the rate is what they reached
            users=profile.peak_users(self.plan),
            hosts=None if hosts is None else hosts(seconds_of(round(duration_s, 3), len(self.timeline))),
            test=None if against is None else against.test,
            test_version=None if against is None else against.test_version,
            baseline=cmp,
        )


MAX_INTERVAL_COUNT = 10_000_000  # per generator and second: far above any real rate


class BadInterval(ValueError):
    """An interval no generator of the run could have sent; nothing of it is counted."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_interval(s: IntervalStats, is_member: Callable[[str], bool], max_seq: int) -> None:
    """Refuse intervals that would corrupt the totals: strangers, absurd numbers."""
    if not is_member(s.generator_id):
        raise BadInterval(f"generator {s.generator_id!r} is not part of run {s.run_id}", "generator_id")
    if not 0 <= s.seq <= max_seq:
        raise BadInterval(f"seq {s.seq} is outside the run (0..{max_seq})", "seq")
    if not (math.isfinite(s.target) and 0 <= s.target <= MAX_INTERVAL_COUNT):
        raise BadInterval("target must be a finite number >= 0", "target")
    for field_name in ("sent", "in_flight"):
        if not 0 <= getattr(s, field_name) <= MAX_INTERVAL_COUNT:
            raise BadInterval(f"{field_name} out of range", field_name)
    for name, r in s.requests.items():
        where = f"requests.{name}"
        numbers = [r.count, r.late, r.dropped, *r.errors.values()]
        if any(not 0 <= n <= MAX_INTERVAL_COUNT for n in numbers):
            raise BadInterval("counts must be between 0 and 10,000,000", where)
        if sum(r.errors.values()) > r.count:
            raise BadInterval("more errors than completed requests", where)


def is_behind(intended: float, sent: int, late: int, dropped: int) -> bool:
    """A generator that could not send on time, or at all, what it was asked to."""
    slack = max(2.0, 0.01 * intended)
    return dropped > 0 or late > slack or sent < intended - max(2.0, 0.05 * intended)


def _pcts(counts: np.ndarray) -> tuple[float | None, float | None, float | None]:
    pv = histogram.percentiles_of(counts, (50.0, 90.0, 99.0))
    if pv is None:
        return None, None, None
    return pv[0] / 1000.0, pv[1] / 1000.0, pv[2] / 1000.0


def _request_totals(
    c: _Counts, lat: np.ndarray, svc: np.ndarray, duration_s: float
) -> RequestTotals:
    return RequestTotals(
        requests=c.requests,
        errors=c.errors,
        error_rate=round(c.errors / c.requests, 6) if c.requests else 0.0,
        error_kinds=dict(sorted(c.error_kinds.items())),
        achieved_rps=round(c.requests / duration_s, 3),
        late=c.late,
        dropped=c.dropped,
        latency_ms=histogram.summarize_counts(lat),
        service_time_ms=histogram.summarize_counts(svc),
    )
