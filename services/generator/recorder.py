"""Per-interval outcome recording: cheap appends on the hot path, histograms once a second.

The engine appends each response's latency (from the intended time) and service
time (from the actual send) to plain lists; ``Interval.to_stats`` buckets them
into HdrHistograms with numpy (same counts as ``record_value``, ~20× cheaper).
"""

from __future__ import annotations

from schemas.stats import IntervalStats, RequestInterval
from services.common import histogram


class Interval:
    """Raw outcomes of one interval, indexed by request-spec number."""

    __slots__ = ("latency", "service", "errors", "late", "dropped", "sent")

    def __init__(self, n_specs: int) -> None:
        self.latency: list[list[float]] = [[] for _ in range(n_specs)]  # seconds
        self.service: list[list[float]] = [[] for _ in range(n_specs)]
        self.errors: list[dict[str, int]] = [{} for _ in range(n_specs)]
        self.late = [0] * n_specs
        self.dropped = [0] * n_specs
        self.sent = 0

    def record(self, spec: int, latency_s: float, service_s: float, error: str | None) -> None:
        self.latency[spec].append(latency_s)
        self.service[spec].append(service_s)
        if error is not None:
            errs = self.errors[spec]
            errs[error] = errs.get(error, 0) + 1

    def completed(self) -> int:
        return sum(len(x) for x in self.latency)

    def merge(self, other: Interval) -> None:
        """Add another interval's outcomes (the tail of a run, or another worker's)."""
        for i in range(len(self.latency)):
            self.latency[i].extend(other.latency[i])
            self.service[i].extend(other.service[i])
            for kind, n in other.errors[i].items():
                self.errors[i][kind] = self.errors[i].get(kind, 0) + n
            self.late[i] += other.late[i]
            self.dropped[i] += other.dropped[i]
        self.sent += other.sent

    def to_stats(
        self,
        names: list[str],
        *,
        run_id: str,
        generator_id: str,
        epoch: int,
        seq: int,
        target: float,
        in_flight: int,
        final: bool = False,
    ) -> IntervalStats:
        per_name: dict[str, RequestInterval] = {}
        for i, name in enumerate(names):
            count = len(self.latency[i])
            if count == 0 and not self.dropped[i] and not self.late[i]:
                continue
            lat, svc = histogram.new(), histogram.new()
            histogram.record_many(lat, self.latency[i], scale=1e6)
            histogram.record_many(svc, self.service[i], scale=1e6)
            per_name[name] = RequestInterval(
                count=count,
                errors=dict(self.errors[i]),
                late=self.late[i],
                dropped=self.dropped[i],
                latency=histogram.encode(lat),
                service=histogram.encode(svc),
            )
        return IntervalStats(
            run_id=run_id,
            generator_id=generator_id,
            epoch=epoch,
            seq=seq,
            target=round(target, 3),
            sent=self.sent,
            in_flight=in_flight,
            requests=per_name,
            final=final,
        )
