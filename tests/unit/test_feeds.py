"""Data feeds (services/generator/feeds.py) and the users split (coordinator slicing)."""

from __future__ import annotations

import pytest

from schemas.plan import DataFeed
from services.plan.profile import users_for
from services.generator.feeds import Exhausted, Feed, Feeds, shard

ROWS = [{"id": i} for i in range(10)]


def drain(feed: Feed) -> list[int]:
    out = []
    while True:
        try:
            out.append(feed.next()["id"])
        except Exhausted:
            return out


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 10, 13])
def test_unique_rows_are_partitioned_among_generators(count):
    used = [drain(Feed(DataFeed(mode="unique", rows=ROWS), index, count)) for index in range(count)]
    flat = [i for part in used for i in part]
    assert sorted(flat) == list(range(10))  # every row once, none twice
    assert max(map(len, used)) - min(map(len, used)) <= 1


def test_shard_is_by_position():
    assert [r["id"] for r in shard(ROWS, 1, 3)] == [1, 4, 7]


def test_cycle_wraps_and_random_stays_in_rows():
    cyc = Feed(DataFeed(mode="cycle", rows=ROWS[:3]), 1, 2)  # cycle ignores sharding
    assert [cyc.next()["id"] for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    rnd = Feed(DataFeed(mode="random", rows=ROWS), seed=3)
    picks = {rnd.next()["id"] for _ in range(200)}
    assert picks == set(range(10))
    assert cyc.remaining() is None


def test_feeds_draw_by_scope():
    feeds = Feeds([DataFeed(rows=[{"a": 1}], per="user"), DataFeed(rows=[{"b": 2}])])
    assert feeds.draw("user") == {"a": 1}
    assert feeds.draw("iteration") == {"b": 2}
    assert feeds.has("user") and not Feeds([]).has("iteration")


@pytest.mark.parametrize("total,count", [(10, 3), (1, 2), (7, 7), (100, 6), (0, 4), (5, 1)])
def test_users_split_adds_up_and_is_even(total, count):
    parts = [users_for(total, i, count) for i in range(count)]
    assert sum(parts) == total
    assert max(parts) - min(parts) <= 1
