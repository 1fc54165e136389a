"""HdrHistogram helpers shared by generator, coordinator and readers of reports.

Every histogram in Surge has the same shape (values in microseconds, 1 µs to one hour,
3 significant digits) so that merging is an exact element-wise add of counts.

``record_many`` is the hot path: instead of ``record_value`` per request (~1.1 µs each
in Python) the generator appends latencies to a list and buckets the whole interval
with numpy at once, computing the same counts index HdrHistogram computes.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np
from hdrh.histogram import HdrHistogram

from schemas.stats import Percentiles

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour; anything slower is clamped to it
SIGNIFICANT_FIGURES = 3

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def _acyclic(hist: HdrHistogram) -> HdrHistogram:
    """Make hdrh's encoder -> histogram back reference weak.

    hdrh builds a histogram <-> encoder cycle, so each ~190 KB histogram would be
    freed only by the cyclic GC's rare full collections: a generator's or a
    coordinator's RSS climbs by ~1 MB/s between them. With the back reference
    weak, a histogram is freed as soon as it is dropped, and still encodes.
    """
    hist.encoder.histogram = weakref.proxy(hist)
    return hist


def new() -> HdrHistogram:
    return _acyclic(HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES))


def encode(hist: HdrHistogram) -> str:
    """Standard V2 compressed base64 encoding; "" for an empty histogram."""
    if hist.get_total_count() == 0:
        return ""
    return hist.encode().decode("ascii")


class HistogramDecodeError(ValueError):
    """The text is not a Surge histogram in the standard encoding."""


def decode(text: str) -> HdrHistogram:
    """Decode a histogram sent by another service; raise HistogramDecodeError if bad."""
    if not text:
        return new()
    try:
        hist = _acyclic(HdrHistogram.decode(text.encode("ascii")))
    except Exception as exc:  # the library raises many types (zlib, ctypes, its own)
        raise HistogramDecodeError(f"not a compressed HdrHistogram: {exc}") from exc
    if hist.get_total_count() < 0 or hist.counts_len != new().counts_len:
        raise HistogramDecodeError("histogram shape differs from Surge's (1 µs .. 1 h, 3 digits)")
    return hist


def decode_for_display(text: str) -> HdrHistogram | None:
    """A report's histogram to show: None when it holds nothing or cannot be read,
    so a page shows "no data" instead of failing."""
    try:
        hist = decode(text)
    except HistogramDecodeError:
        return None
    return hist if hist.get_total_count() else None


def add(into: HdrHistogram, other: HdrHistogram) -> None:
    """Merge counts; an empty histogram is skipped (hdrh would take its min as 0)."""
    if other.get_total_count():
        into.add(other)


def _index_params(hist: HdrHistogram) -> tuple[int, int, int, int]:
    return (
        hist.sub_bucket_mask,
        hist.unit_magnitude,
        hist.sub_bucket_half_count_magnitude,
        hist.sub_bucket_half_count,
    )


def counts_indexes(hist: HdrHistogram, values: np.ndarray) -> np.ndarray:
    """The counts-array index of every value, exactly as HdrHistogram computes it."""
    mask, unit_mag, half_mag, half_count = _index_params(hist)
    v = values.astype(np.int64)
    # bit_length(v | mask): frexp's exponent is exact for integers below 2**53
    _, bit_length = np.frexp((v | mask).astype(np.float64))
    bucket = bit_length.astype(np.int64) - unit_mag - (half_mag + 1)
    sub_bucket = v >> (bucket + unit_mag)
    return ((bucket + 1) << half_mag) + (sub_bucket - half_count)


def record_many(
    hist: HdrHistogram, values: Sequence[float] | np.ndarray, scale: float = 1.0
) -> int:
    """Record every value × ``scale`` (giving µs) into ``hist``, clamped to [0, HIGHEST_US].

    Returns how many were recorded. Same counts as calling ``record_value`` for each.
    """
    if len(values) == 0:
        return 0
    v = np.asarray(values, dtype=np.float64)
    if scale != 1.0:
        v = v * scale
    v = np.clip(np.rint(v), 0, HIGHEST_US).astype(np.int64)
    idx = counts_indexes(hist, v)
    binned = np.bincount(idx, minlength=hist.counts_len)[: hist.counts_len]
    counts = np.ctypeslib.as_array(hist.counts)
    counts += binned.astype(counts.dtype)
    n = int(v.size)
    hist.total_count += n
    hist.min_value = min(hist.min_value, int(v.min()))
    hist.max_value = max(hist.max_value, int(v.max()))
    return n


def summarize(hist: HdrHistogram) -> Percentiles | None:
    """Percentiles in milliseconds, computed in one pass; None when empty."""
    if hist.get_total_count() == 0:
        return None
    pv = hist.get_percentile_to_value_dict(list(PERCENTILES))
    ms = 1000.0
    return Percentiles(
        min=hist.get_min_value() / ms,
        mean=round(hist.get_mean_value() / ms, 3),
        p50=pv[50.0] / ms,
        p90=pv[90.0] / ms,
        p95=pv[95.0] / ms,
        p99=pv[99.0] / ms,
        p999=pv[99.9] / ms,
        max=hist.get_max_value() / ms,
    )


def percentile_ms(hist: HdrHistogram, percentile: float) -> float | None:
    if hist.get_total_count() == 0:
        return None
    return hist.get_value_at_percentile(percentile) / 1000.0

