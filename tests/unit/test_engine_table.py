"""The weighted request table (services/generator/requests.py: weighted_table)."""

from __future__ import annotations

from collections import Counter

import pytest

from services.generator.requests import TABLE_SIZE, weighted_table


@pytest.mark.parametrize(
    "weights",
    [[1], [1, 1], [3, 1], [1, 1, 2], [7, 2, 1], [1, 4], [5, 3, 2], [1, 0, 1], [250, 750]],
)
def test_proportions_are_exact_per_cycle(weights):
    table = weighted_table(weights)
    counts = Counter(table)
    total = sum(weights)
    for i, w in enumerate(weights):
        assert counts[i] * total == w * len(table), (i, counts[i], len(table))


def test_three_to_one_gives_750_and_250():
    assert Counter(weighted_table([3, 1])) == {0: 750, 1: 250}
    assert len(weighted_table([3, 1])) == TABLE_SIZE


def test_zero_weight_never_chosen():
    table = weighted_table([0, 5, 0, 5])
    assert set(table) == {1, 3}
    assert Counter(table) == {1: 500, 3: 500}


def test_table_is_shuffled_and_seeded():
    a = weighted_table([1, 1], seed=0)
    b = weighted_table([1, 1], seed=0)
    c = weighted_table([1, 1], seed=1)
    assert a == b
    assert a != c
    assert a != sorted(a)  # not 500 zeros then 500 ones
    # a shuffled table mixes early: both specs appear in the first 20 arrivals
    assert set(a[:20]) == {0, 1}


def test_custom_size():
    table = weighted_table([1, 3], size=8)
    assert Counter(table) == {0: 2, 1: 6}


def test_single_spec_fills_table():
    assert weighted_table([42]) == [0] * TABLE_SIZE


@pytest.mark.parametrize("weights", [[1, 10_000], [1, 1999]])
def test_every_positive_weight_is_in_the_table(weights):
    table = weighted_table(weights)
    assert set(table) == {i for i, w in enumerate(weights) if w > 0}


def test_one_to_two_is_exact_per_cycle():
    counts = Counter(weighted_table([1, 2]))
    assert counts[1] == 2 * counts[0]
