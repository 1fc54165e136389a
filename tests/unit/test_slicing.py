"""Splitting a run's rate among generators (services/coordinator/slicing.py)."""

from __future__ import annotations

import pytest

from services.coordinator import slicing


def test_equal_capacities_give_equal_shares():
    shares = slicing.shares({"g2": 500.0, "g1": 500.0, "g3": 500.0})
    assert shares == {"g1": pytest.approx(1 / 3), "g2": pytest.approx(1 / 3), "g3": pytest.approx(1 / 3)}
    assert sum(shares.values()) == pytest.approx(1.0)


def test_shares_are_proportional_to_capacity():
    shares = slicing.shares({"a": 1000.0, "b": 3000.0})
    assert shares == {"a": 0.25, "b": 0.75}


def test_one_generator_takes_everything():
    assert slicing.shares({"only": 123.0}) == {"only": 1.0}


def test_no_generators_no_shares():
    assert slicing.shares({}) == {}


def test_zero_or_negative_capacities_split_evenly_when_nothing_is_known():
    assert slicing.shares({"a": 0.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}
    assert slicing.shares({"a": -5.0, "b": 0.0, "c": -1.0}) == {
        "a": pytest.approx(1 / 3), "b": pytest.approx(1 / 3), "c": pytest.approx(1 / 3)
    }


def test_negative_capacity_counts_as_zero():
    shares = slicing.shares({"a": -100.0, "b": 400.0, "c": 100.0})
    assert shares == {"a": 0.0, "b": 0.8, "c": 0.2}


def test_new_generator_with_capacity_joins_proportionally():
    before = slicing.shares({"a": 1.0, "b": 1.0})
    after = slicing.shares({"a": 1.0, "b": 1.0, "c": 2.0})
    assert before == {"a": 0.5, "b": 0.5}
    assert after == {"a": 0.25, "b": 0.25, "c": 0.5}


def test_pick_takes_all_when_not_limited():
    assert slicing.pick({"b": 1.0, "a": 1.0, "c": 5.0}, None) == ["c", "a", "b"]


def test_pick_takes_the_biggest_then_by_id():
    available = {"g1": 100.0, "g2": 300.0, "g3": 300.0, "g4": 50.0}
    assert slicing.pick(available, 2) == ["g2", "g3"]
    assert slicing.pick(available, 3) == ["g2", "g3", "g1"]
    assert slicing.pick(available, 10) == ["g2", "g3", "g1", "g4"]
    assert slicing.pick(available, 0) == []
    assert slicing.pick({}, 2) == []


def test_split_holds_a_generators_own_rate_and_the_others_share_the_rest():
    from services.coordinator.slicing import split

    caps = {"a": 1.0, "b": 1.0, "c": 1.0}
    total, sh = split(300.0, caps, {"a": 150.0})  # b and c share the 150 left
    assert total == 300 and sh == {"a": 0.5, "b": 0.25, "c": 0.25}
    total, sh = split(250.0, caps, {"a": 150.0, "b": 0.0})  # b stopped
    assert total == 250 and sh["b"] == 0 and sh["a"] == 0.6 and sh["c"] == 0.4
    total, sh = split(100.0, {"a": 1.0, "b": 1.0}, {"a": 30.0, "b": 20.0})  # nobody free
    assert total == 50 and sh == {"a": 0.6, "b": 0.4}
    total, sh = split(0.0, {"a": 1.0, "b": 1.0}, {"a": 0.0})  # all quiet: shares wait
    assert total == 0 and sh == {"a": 0.0, "b": 1.0}
    assert sum(split(90.0, caps, {"c": 10.0})[1].values()) == 1.0
