"""Counts-array merging (services/common/histogram.py) against hdrhistogram's own figures.

The coordinator never builds an HdrHistogram per interval; every figure it derives
from counts arrays must equal what hdrh itself computes for the same histogram.
"""

from __future__ import annotations

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from services.common import histogram
from services.common.histogram import HistogramDecodeError

PCTS = [0.0, 1.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]


def random_hist(rng, n: int, spread: float = 1.5) -> HdrHistogram:
    h = histogram.new()
    histogram.record_many(h, rng.lognormal(np.log(5000), spread, n))
    return h


def test_index_tables_equal_hdrh_for_every_index():
    h = histogram.new()
    low, high, mid = histogram._tables()
    for i in range(h.counts_len):
        v = h.get_value_from_index(i)
        assert low[i] == h.get_lowest_equivalent_value(v)
        assert high[i] == h.get_highest_equivalent_value(v)
        assert mid[i] == h._hdr_median_equiv_value(v)


@pytest.mark.parametrize("seed", range(8))
def test_sparse_decode_and_percentiles_equal_hdrh(seed):
    rng = np.random.default_rng(seed)
    h = random_hist(rng, int(rng.integers(1, 3000)), spread=float(rng.uniform(0.1, 3.0)))
    text = histogram.encode(h)
    s = histogram.decode_sparse(text)
    ref = HdrHistogram.decode(text.encode())
    dense = np.ctypeslib.as_array(ref.counts).astype(np.int64)
    counts = histogram.zeros()
    histogram.add_sparse(counts, s)
    assert s.total == ref.get_total_count()
    assert np.array_equal(counts, dense)
    assert histogram.percentiles_of(counts, PCTS) == [ref.get_value_at_percentile(p) for p in PCTS]
    assert histogram.summarize_counts(counts) == histogram.summarize(ref)
    assert histogram.encode_counts(counts) == text  # the same standard encoding back


def test_merged_counts_equal_hdrh_adds_and_sparse_p99_equals_merged_hdrh():
    rng = np.random.default_rng(42)
    parts = [random_hist(rng, int(rng.integers(1, 500))) for _ in range(12)]
    ref = histogram.new()
    counts = histogram.zeros()
    sparse = []
    for h in parts:
        text = histogram.encode(h)
        histogram.add(ref, histogram.decode(text))
        sparse.append(histogram.decode_sparse(text))
        histogram.add_sparse(counts, sparse[-1])
    assert histogram.percentiles_of(counts, PCTS) == [ref.get_value_at_percentile(p) for p in PCTS]
    assert histogram.summarize_counts(counts) == histogram.summarize(ref)
    assert histogram.encode_counts(counts) == histogram.encode(ref)
    for p in (50.0, 99.0, 100.0):
        assert histogram.sparse_percentile_ms(sparse[:5], p) == pytest.approx(
            _merged(parts[:5]).get_value_at_percentile(p) / 1000.0)


def _merged(hists) -> HdrHistogram:
    out = histogram.new()
    for h in hists:
        histogram.add(out, histogram.decode(histogram.encode(h)))
    return out


def test_empty_inputs():
    assert histogram.decode_sparse("").total == 0
    assert histogram.percentiles_of(histogram.zeros(), [50.0]) is None
    assert histogram.summarize_counts(histogram.zeros()) is None
    assert histogram.sparse_percentile_ms([], 99.0) is None
    assert histogram.encode_counts(histogram.zeros()) == ""


def test_bad_encodings_raise_and_leave_the_scratch_clean():
    other_shape = HdrHistogram(1, 60_000_000, 2)
    other_shape.record_value(1000)
    good = histogram.encode(random_hist(np.random.default_rng(1), 100))
    for bad in ["not base64!", "AAAA", good[:40], other_shape.encode().decode()]:
        with pytest.raises(HistogramDecodeError):
            histogram.decode_sparse(bad)
    assert not histogram._scratch_np.any()
    assert histogram.decode_sparse(good).total == 100


def test_a_high_percentile_walked_from_the_top_equals_hdrh():
    """Few values above it (a generator's p99 of one second): found from the top bucket
    down; the same value hdrh gives for the merged histogram, whatever the sizes."""
    rng = np.random.default_rng(7)
    walked = summed = 0
    for _ in range(60):
        parts = [random_hist(rng, int(rng.integers(1, 400))) for _ in range(int(rng.integers(1, 6)))]
        sparse = [histogram.decode_sparse(histogram.encode(h)) for h in parts]
        merged = _merged(parts)
        total = sum(s.total for s in sparse)
        for p in (90.0, 99.0, 99.9, 100.0):
            if total - max(int(p * total / 100 + 0.5), 1) < histogram.TOP_WALK:
                walked += 1
            else:
                summed += 1
            assert histogram.sparse_percentile_ms(sparse, p) == pytest.approx(
                merged.get_value_at_percentile(p) / 1000.0), (total, p)
    assert walked > 100 and summed > 10  # both ways were taken
