"""Interval recording and merging (services/generator/recorder.py, workers' parts)."""

from __future__ import annotations

import gc
import random

import numpy as np

from services.common import histogram
from services.generator.recorder import Interval
from services.generator.workers import add_part, to_part


def filled(seed: int, n: int) -> Interval:
    rng = random.Random(seed)
    iv = Interval(2)
    for _ in range(n):
        spec = rng.randrange(2)
        lat = rng.expovariate(1 / 0.004)
        iv.record(spec, lat, lat * rng.random(), rng.choice([None, None, None, "status", "timeout"]))
    iv.sent = n + 3
    iv.late[1] = 2
    iv.dropped[0] = 1
    return iv


def stats(iv: Interval):
    return iv.to_stats(["a", "b"], run_id="r", generator_id="g", epoch=1, seq=0, target=0, in_flight=0)


def counts(text: str) -> np.ndarray:
    return np.ctypeslib.as_array(histogram.decode(text).counts).copy()


def test_worker_parts_merge_to_exactly_one_engines_histograms():
    a, b, c = filled(1, 3000), filled(2, 2000), filled(3, 1000)
    one = Interval(2)
    for iv in (a, b, c):
        one.merge(iv)
    pooled = filled(1, 3000)
    add_part(pooled, to_part(filled(2, 2000), worker=1, seq=0, in_flight=0))
    add_part(pooled, to_part(filled(3, 1000), worker=2, seq=0, in_flight=0))
    want, got = stats(one), stats(pooled)
    assert got.sent == want.sent == 6009
    for name in ("a", "b"):
        w, g = want.requests[name], got.requests[name]
        assert (g.count, g.errors, g.late, g.dropped) == (w.count, w.errors, w.late, w.dropped)
        assert np.array_equal(counts(g.latency), counts(w.latency))
        assert np.array_equal(counts(g.service), counts(w.service))
    assert pooled.completed() == 6000


def test_an_idle_worker_part_adds_nothing():
    iv = filled(1, 100)
    before = stats(iv)
    add_part(iv, to_part(Interval(2), worker=1, seq=0, in_flight=0))
    after = stats(iv)
    assert after.requests["a"].count == before.requests["a"].count
    assert after.sent == before.sent


def test_encoded_histograms_are_freed_without_the_cyclic_gc():
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        stats(filled(1, 100))
        gc.collect()
        left = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    # hdrh's histogram <-> encoder cycle is broken, so the ~190 KB counts go at once
    assert not left & {"HdrHistogram", "HdrHistogramEncoder", "HdrPayload"}, left
