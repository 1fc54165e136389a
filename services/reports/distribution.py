"""The percentiles reports show, and the one function that reads a distribution.

A report's whole-run histogram travels as HdrHistogram's compressed base64, which a
browser or a table cannot read: ``distribution`` turns it into (percentile, ms) points,
stopping where the histogram has no more resolution (1/total) and ending at the max, as
HdrHistogram's own percentile output does. Every view reads the same points.
"""

from __future__ import annotations

import msgspec

from services.common import histogram

#: the latency columns of every table (terminal, HTML): label, field of ``Percentiles``
COLUMNS: tuple[tuple[str, str], ...] = (
    ("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max"),
)

#: the whole-run distribution as a table (HTML), as HdrHistogram's percentile tables show it
TABLE = (50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 99.999)

# the UI's curve: percentiles spread evenly on the 1/(1-p) log axis, up to 99.999%
_STEPS = 51
CURVE = tuple(round(100.0 * (1.0 - 10 ** (-5.0 * i / (_STEPS - 1))), 6) for i in range(_STEPS))


class Point(msgspec.Struct, frozen=True, array_like=True):
    percentile: float
    value_ms: float


def distribution(encoded: str, percentiles: tuple[float, ...] = CURVE) -> list[Point]:
    """Latency (ms) at each of ``percentiles`` the histogram resolves, ending at the max;
    [] for no data (or a histogram that cannot be read)."""
    hist = histogram.decode_for_display(encoded)
    if hist is None:
        return []
    total = hist.get_total_count()
    values = hist.get_percentile_to_value_dict(list(percentiles))
    points = [Point(p, values[p] / 1000.0) for p in percentiles if p < 100.0]
    # beyond 1/total the histogram has no more resolution: stop at the max
    cutoff = 100.0 * (1.0 - 1.0 / total)
    points = [p for p in points if p.percentile <= cutoff] or points[:1]
    last = Point(100.0 * (1.0 - 1.0 / max(total, 2)), hist.get_max_value() / 1000.0)
    if points and points[-1].percentile >= last.percentile:
        points.pop()
    points.append(last)
    return points


def count(encoded: str) -> int:
    """How many values the histogram holds (0 for none or unreadable)."""
    hist = histogram.decode_for_display(encoded)
    return 0 if hist is None else hist.get_total_count()
