"""HdrHistogram helpers shared by generator, coordinator and readers of reports.

Every histogram in Surge has the same shape (values in microseconds, 1 µs to one hour,
3 significant digits) so that merging is an exact element-wise add of counts.

``record_many`` is the hot path: instead of ``record_value`` per request (~1.1 µs each
in Python) the generator appends latencies to a list and buckets the whole interval
with numpy at once, computing the same counts index HdrHistogram computes.
"""

from __future__ import annotations

import binascii
import ctypes
import functools
import math
import weakref
import zlib
from collections.abc import Iterable, Sequence

import numpy as np
import pyhdrh
from hdrh import codec
from hdrh.histogram import HdrHistogram, get_bucket_count

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



# --- counts arrays: merging without histogram objects ----------------------------------
#
# The coordinator merges thousands of intervals a second. It never builds an
# HdrHistogram per interval (each one allocates a 188 KB counts array): an encoded
# histogram is decoded by hdrh's own C decoder into one reused scratch array, and
# only its non-zero (index, count) pairs leave it. Sums are numpy int64 arrays of
# the same shape; percentiles come from a cumulative sum, with the exact rules of
# hdrh's ``get_value_at_percentile`` (unit tests hold them to hdrh's own figures).

COUNTS_LEN = new().counts_len
_EMPTY = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
_scratch = (ctypes.c_ulonglong * COUNTS_LEN)()
_scratch_np = np.ctypeslib.as_array(_scratch)


class Sparse:
    """One decoded histogram: its counts from index ``lo`` (the first non-zero) to its
    last non-zero index, as one small array (a window of the full counts array)."""

    __slots__ = ("lo", "counts", "total")

    def __init__(self, lo: int, counts: np.ndarray, total: int) -> None:
        self.lo = lo
        self.counts = counts
        self.total = total


_NOTHING = Sparse(0, np.zeros(0, dtype=np.int64), 0)


@functools.lru_cache(maxsize=64)
def _shape(lowest: int, highest: int, digits: int) -> tuple[int, int, int]:
    """(counts_len, unit magnitude, sub-bucket half-count magnitude) of a histogram's
    settings, computed as hdrh does but without allocating one."""
    if lowest < 1 or highest < 2 * lowest or not 1 <= digits <= 5:
        raise HistogramDecodeError("histogram settings out of range")
    unit_mag = int(math.floor(math.log(lowest) / math.log(2)))
    sub_mag = int(math.ceil(math.log(2 * math.pow(10, digits)) / math.log(2)))
    half_mag = sub_mag - 1 if sub_mag > 1 else 0
    sub_count = int(math.pow(2, half_mag + 1))
    buckets = get_bucket_count(highest, sub_count, unit_mag)
    return (buckets + 1) * (sub_count // 2), unit_mag, half_mag


_OURS = None


def decode_sparse(text: str) -> Sparse:
    """The counts of an encoded histogram (standard V2 base64 encoding) as a Sparse;
    raise HistogramDecodeError if it is not a Surge histogram. Nothing of 188 KB is built."""
    if not text:
        return _NOTHING
    global _OURS
    if _OURS is None:
        h = new()
        _OURS = (h.counts_len, h.unit_magnitude, h.sub_bucket_half_count_magnitude)
    try:
        raw = binascii.a2b_base64(text)
        if len(raw) < codec.ext_header_size:
            raise HistogramDecodeError("too short")
        header = codec.ExternalHeader.from_buffer_copy(raw)
        if codec.get_cookie_base(header.cookie) != codec.V2_COMPRESSION_COOKIE_BASE \
                or header.length != len(raw) - codec.ext_header_size:
            raise HistogramDecodeError("bad header")
        data = zlib.decompress(raw[codec.ext_header_size:])
        if len(data) < codec.payload_header_size:
            raise HistogramDecodeError("payload too short")
        payload = codec.PayloadHeader.from_buffer_copy(data)
        if codec.get_cookie_base(payload.cookie) != codec.V2_ENCODING_COOKIE_BASE:
            raise HistogramDecodeError("bad payload cookie")
        shape = _shape(payload.lowest_trackable_value, payload.highest_trackable_value,
                       payload.significant_figures)
    except HistogramDecodeError as exc:
        raise HistogramDecodeError(f"not a compressed HdrHistogram: {exc}") from None
    except Exception as exc:  # base64, zlib, ctypes: many types
        raise HistogramDecodeError(f"not a compressed HdrHistogram: {exc}") from exc
    if shape != _OURS:
        raise HistogramDecodeError("histogram shape differs from Surge's (1 µs .. 1 h, 3 digits)")
    try:
        result = pyhdrh.decode(data, codec.payload_header_size, ctypes.addressof(_scratch),
                               COUNTS_LEN, 8)
    except Exception as exc:
        _scratch_np[:] = 0  # it may have written part of the counts before failing
        raise HistogramDecodeError(f"not a compressed HdrHistogram: {exc}") from exc
    total = int(result["total"])
    if not total:
        return _NOTHING
    lo, hi = int(result["min_nonzero_index"]), int(result["max_nonzero_index"])
    window = _scratch_np[lo:hi + 1]
    counts = window.astype(np.int64)  # a copy of the window only
    window[:] = 0
    # the decoder writes no negative count; a total that wrapped around shows as a bucket
    # holding more than the whole
    if total < 0 or total > 2**62 or int(counts.max()) > total:
        raise HistogramDecodeError("histogram counts out of range")
    return Sparse(lo, counts, total)


def zeros() -> np.ndarray:
    return np.zeros(COUNTS_LEN, dtype=np.int64)


def add_sparse(into: np.ndarray, s: Sparse) -> None:
    if s.total:
        into[s.lo:s.lo + len(s.counts)] += s.counts


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per counts index: the lowest, highest and median equivalent values (µs), as hdrh
    computes them for the value at that index."""
    h = new()
    i = np.arange(COUNTS_LEN, dtype=np.int64)
    half_mag, half_count = h.sub_bucket_half_count_magnitude, h.sub_bucket_half_count
    unit_mag, mask = h.unit_magnitude, h.sub_bucket_mask
    bucket = (i >> half_mag) - 1
    sub = (i & (half_count - 1)) + half_count
    first = bucket < 0
    sub = np.where(first, sub - half_count, sub)
    bucket = np.where(first, 0, bucket)
    low = sub << (bucket + unit_mag)
    # the size of the value's equivalent range (hdrh's _hdr_size_of_equiv_value_range)
    _, bit_length = np.frexp((low | mask).astype(np.float64))
    vb = bit_length.astype(np.int64) - unit_mag - (half_mag + 1)
    vsub = low >> (vb + unit_mag)
    vb = np.where(vsub >= h.sub_bucket_count, vb + 1, vb)
    size = np.left_shift(np.int64(1), unit_mag + vb)
    return low, low + size - 1, low + (size >> 1)


def _target(percentile: float, total: int) -> int:
    return max(int((min(percentile, 100.0) * total / 100) + 0.5), 1)


def percentiles_of(counts: np.ndarray, percentiles: Iterable[float]) -> list[int] | None:
    """Values (µs) at ``percentiles`` of a counts array, as hdrh's
    ``get_value_at_percentile`` gives them; None when empty."""
    cum = np.cumsum(counts)
    total = int(cum[-1]) if len(cum) else 0
    if total == 0:
        return None
    low, high, _ = _tables()
    out = []
    for p in percentiles:
        i = int(np.searchsorted(cum, _target(p, total), side="left"))
        out.append(int(high[i] if p else low[i]))
    return out


TOP_WALK = 64  # a percentile this few values from the top is found walking down from it


def sparse_percentile_ms(parts: list[Sparse], percentile: float) -> float | None:
    """One percentile (ms) of several Sparse histograms together, without a full array.

    A high one (a generator's p99 of a second: the values above it are few) walks down
    from the top bucket instead of adding the windows and summing them all."""
    parts = [p for p in parts if p.total]
    if not parts:
        return None
    total = sum(p.total for p in parts)
    skip = total - _target(percentile, total)  # at most this many values lie above its bucket
    if percentile and skip < TOP_WALK:
        return _from_top(parts, skip) / 1000.0
    if len(parts) == 1:
        lo, counts = parts[0].lo, parts[0].counts
    else:
        lo = min(p.lo for p in parts)
        counts = np.zeros(max(p.lo + len(p.counts) for p in parts) - lo, dtype=np.int64)
        for p in parts:
            counts[p.lo - lo:p.lo - lo + len(p.counts)] += p.counts
    cum = np.cumsum(counts)
    i = int(np.searchsorted(cum, _target(percentile, int(cum[-1])), side="left"))
    low, high, _ = _tables()
    return int(high[lo + i] if percentile else low[lo + i]) / 1000.0


def _from_top(parts: list[Sparse], skip: int) -> int:
    """The value (µs) of the lowest bucket with at most ``skip`` values above it: the
    bucket ``percentiles_of`` finds, walked to from the top (each window ends non-zero)."""
    at = [len(p.counts) - 1 for p in parts]  # each part's next bucket to look at
    above = 0
    while True:
        index = max(p.lo + j for p, j in zip(parts, at) if j >= 0)
        here = [k for k, (p, j) in enumerate(zip(parts, at)) if j >= 0 and p.lo + j == index]
        above += sum(int(parts[k].counts[at[k]]) for k in here)
        if above > skip:
            return int(_tables()[1][index])
        for k in here:  # on to each one's next non-zero bucket below
            counts, j = parts[k].counts, at[k] - 1
            while j >= 0 and not counts[j]:
                j -= 1
            at[k] = j
        if all(j < 0 for j in at):
            return int(_tables()[1][index])


def summarize_counts(counts: np.ndarray) -> Percentiles | None:
    """``summarize`` of a counts array: the same figures hdrh gives for that histogram."""
    nz = np.flatnonzero(counts)
    if len(nz) == 0:
        return None
    low, high, mid = _tables()
    c = counts[nz]
    total = int(c.sum())
    weighted = sum(int(n) * int(m) for n, m in zip(c.tolist(), mid[nz].tolist()))
    pv = dict(zip(PERCENTILES, percentiles_of(counts, PERCENTILES) or []))
    ms = 1000.0
    return Percentiles(
        min=int(low[nz[0]]) / ms,
        mean=round(float(weighted) / total / ms, 3),
        p50=pv[50.0] / ms,
        p90=pv[90.0] / ms,
        p95=pv[95.0] / ms,
        p99=pv[99.0] / ms,
        p999=pv[99.9] / ms,
        max=int(high[nz[-1]]) / ms,
    )


def from_counts(counts: np.ndarray) -> HdrHistogram:
    """An HdrHistogram holding ``counts`` (to encode a report's histogram, once)."""
    hist = new()
    nz = np.flatnonzero(counts)
    if len(nz):
        np.ctypeslib.as_array(hist.counts)[:] = counts.astype(np.uint64)
        hist.set_internal_tacking_values(int(nz[0]), int(nz[-1]), int(counts[nz].sum()))
    return hist


def encode_counts(counts: np.ndarray) -> str:
    return encode(from_counts(counts))
