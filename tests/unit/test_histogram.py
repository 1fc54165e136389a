"""HdrHistogram helpers (services/common/histogram.py)."""

from __future__ import annotations

import base64
import ctypes

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from services.common import histogram
from services.common.histogram import HIGHEST_US, HistogramDecodeError


def counts_of(hist: HdrHistogram) -> np.ndarray:
    return np.ctypeslib.as_array(hist.counts).copy()


def boundary_values() -> np.ndarray:
    """Powers of two, their neighbours and sub-bucket edges across the whole range."""
    vals = {0, 1, 2, 3, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, HIGHEST_US, HIGHEST_US - 1}
    k = 0
    while (1 << k) <= HIGHEST_US:
        p = 1 << k
        vals.update({p - 1, p, p + 1})
        k += 1
    for p in (10**e for e in range(10)):
        vals.update({p - 1, p, p + 1})
    return np.array(sorted(v for v in vals if 0 <= v <= HIGHEST_US), dtype=np.int64)


def random_values(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # log-uniform over 1 µs .. 1 h, so every bucket gets hits
    logs = rng.uniform(0.0, np.log(HIGHEST_US), n)
    return np.concatenate([np.floor(np.exp(logs)).astype(np.int64), boundary_values()])


def test_record_many_gives_exactly_record_value_counts():
    values = random_values(100_000)
    fast, slow = histogram.new(), histogram.new()
    assert histogram.record_many(fast, values) == len(values)
    for v in values.tolist():
        assert slow.record_value(v)
    assert np.array_equal(counts_of(fast), counts_of(slow))
    assert fast.get_total_count() == slow.get_total_count() == len(values)
    assert fast.min_value == slow.min_value == 0
    assert fast.max_value == slow.max_value == HIGHEST_US
    assert fast.get_min_value() == slow.get_min_value()
    assert fast.get_max_value() == slow.get_max_value()
    for p in (50.0, 90.0, 99.0, 99.9, 100.0):
        assert fast.get_value_at_percentile(p) == slow.get_value_at_percentile(p)


def test_record_many_index_matches_library_for_every_boundary():
    hist = histogram.new()
    values = boundary_values()
    idx = histogram.counts_indexes(hist, values)
    expected = [hist._counts_index_for(int(v)) for v in values]
    assert idx.tolist() == expected


def test_record_many_min_max_without_zero():
    fast, slow = histogram.new(), histogram.new()
    values = [1500, 37, 999_999, 4096]
    histogram.record_many(fast, values)
    for v in values:
        slow.record_value(v)
    assert fast.min_value == slow.min_value == 37
    assert fast.max_value == slow.max_value == 999_999
    assert fast.get_min_value() == slow.get_min_value() == 37


def test_record_many_accumulates_over_calls():
    hist = histogram.new()
    histogram.record_many(hist, [100, 200])
    histogram.record_many(hist, [50, 300_000])
    assert hist.get_total_count() == 4
    assert hist.min_value == 50
    assert hist.max_value == 300_000
    assert hist.get_count_at_value(100) == 1
    assert hist.get_count_at_value(50) == 1


def test_record_many_scale_rounds_seconds_to_microseconds():
    secs = [0.0012344, 0.0012346, 1.5, 0.000_000_4, 2.0000005]
    fast, slow = histogram.new(), histogram.new()
    histogram.record_many(fast, secs, scale=1e6)
    for s in secs:
        slow.record_value(round(s * 1e6))
    assert np.array_equal(counts_of(fast), counts_of(slow))
    assert fast.min_value == 0  # 0.4 µs rounds to 0
    assert fast.max_value == 2_000_000  # 2000000.5 rounds half to even


def test_record_many_clamps_above_highest_and_below_zero():
    hist = histogram.new()
    n = histogram.record_many(hist, [HIGHEST_US * 10, float("inf"), -5.0, 100])
    assert n == 4
    assert hist.get_total_count() == 4
    assert hist.max_value == HIGHEST_US
    assert hist.get_count_at_value(HIGHEST_US) == 2
    assert hist.get_count_at_value(0) == 1
    assert hist.min_value == 0


def test_record_many_of_nothing_changes_nothing():
    hist = histogram.new()
    assert histogram.record_many(hist, []) == 0
    assert histogram.record_many(hist, np.array([], dtype=np.float64)) == 0
    assert hist.get_total_count() == 0
    assert counts_of(hist).sum() == 0


def test_encode_decode_round_trip_keeps_counts_and_stats():
    hist = histogram.new()
    values = random_values(5_000, seed=7)
    histogram.record_many(hist, values)
    text = histogram.encode(hist)
    assert isinstance(text, str) and text
    back = histogram.decode(text)
    assert np.array_equal(counts_of(back), counts_of(hist))
    assert back.get_total_count() == len(values)
    assert back.get_max_value() == hist.get_max_value()
    for p in (50.0, 99.0, 99.9):
        assert back.get_value_at_percentile(p) == hist.get_value_at_percentile(p)


def test_empty_histogram_encodes_as_empty_string_and_back():
    assert histogram.encode(histogram.new()) == ""
    back = histogram.decode("")
    assert back.get_total_count() == 0
    assert back.counts_len == histogram.new().counts_len


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "not base64 !!!",
        "été",
        "a" * 100,
        base64.b64encode(b"\x1c\x84\x93\x14\x00\x00\x00\x22garbage").decode(),
        base64.b64encode(b"\x00" * 40).decode(),
    ],
)
def test_decode_of_garbage_raises_histogram_decode_error(text):
    with pytest.raises(HistogramDecodeError):
        histogram.decode(text)


def test_decode_of_truncated_histogram_raises():
    hist = histogram.new()
    histogram.record_many(hist, [1, 2, 3, 1000])
    raw = base64.b64decode(histogram.encode(hist))
    with pytest.raises(HistogramDecodeError):
        histogram.decode(base64.b64encode(raw[:-5]).decode())


def test_decode_rejects_other_histogram_shape():
    other = HdrHistogram(1, 1_000_000, 2)
    other.record_value(500)
    with pytest.raises(HistogramDecodeError, match="shape"):
        histogram.decode(other.encode().decode())


def test_decode_error_is_a_value_error():
    assert issubclass(HistogramDecodeError, ValueError)



def test_merging_two_histograms_equals_recording_all_into_one():
    a_vals, b_vals = random_values(20_000, seed=2), random_values(30_000, seed=3) // 7 + 5
    a, b, one = histogram.new(), histogram.new(), histogram.new()
    histogram.record_many(a, a_vals)
    histogram.record_many(b, b_vals)
    histogram.record_many(one, np.concatenate([a_vals, b_vals]))
    merged = histogram.new()
    merged.add(histogram.decode(histogram.encode(a)))
    merged.add(histogram.decode(histogram.encode(b)))
    assert np.array_equal(counts_of(merged), counts_of(one))
    assert merged.get_total_count() == one.get_total_count() == 50_000 + 2 * len(boundary_values())
    assert histogram.summarize(merged) == histogram.summarize(one)


def test_summarize_reports_milliseconds():
    hist = histogram.new()
    # 1..1000 ms, one each, in µs
    histogram.record_many(hist, np.arange(1, 1001) * 1000)
    s = histogram.summarize(hist)
    assert s is not None
    assert hist.get_total_count() == 1000
    assert s.min == pytest.approx(1.0, rel=1e-3)
    assert s.max == pytest.approx(1000.0, rel=1e-3)
    assert s.mean == pytest.approx(500.5, rel=1e-3)
    assert s.p50 == pytest.approx(500.0, rel=1e-3)
    assert s.p90 == pytest.approx(900.0, rel=1e-3)
    assert s.p95 == pytest.approx(950.0, rel=1e-3)
    assert s.p99 == pytest.approx(990.0, rel=1e-3)
    assert s.p999 == pytest.approx(999.0, rel=1e-3)
    assert s.p50 < s.p90 < s.p95 < s.p99 < s.p999 <= s.max


def test_summarize_empty_is_none():
    assert histogram.summarize(histogram.new()) is None
    assert histogram.percentile_ms(histogram.new(), 99.0) is None


def test_percentile_ms():
    hist = histogram.new()
    histogram.record_many(hist, [1000] * 99 + [250_000])
    assert histogram.percentile_ms(hist, 50.0) == 1.0
    assert histogram.percentile_ms(hist, 100.0) == pytest.approx(250.0, rel=1e-3)



def test_counts_are_ctypes_shared_with_encoder():
    # record_many writes through the ctypes array the encoder compresses from
    hist = histogram.new()
    assert isinstance(hist.counts, ctypes.Array)
    histogram.record_many(hist, [12345])
    assert histogram.decode(histogram.encode(hist)).get_count_at_value(12345) == 1


def test_histograms_are_freed_when_dropped_without_the_cyclic_gc():
    import gc
    import weakref

    gc.disable()
    try:
        made = histogram.new()
        made.record_value(250)
        decoded = histogram.decode(histogram.encode(made))
        assert decoded.get_total_count() == 1 and histogram.encode(decoded)  # still encodes
        refs = [weakref.ref(made), weakref.ref(decoded)]
        del made, decoded
        assert [r() for r in refs] == [None, None]  # hdrh's encoder cycle would keep them
    finally:
        gc.enable()
