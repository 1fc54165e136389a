"""Data feeds at run time: which row a virtual user gets next. Pure (seeded randomness).

Rows arrive embedded in the plan. ``unique`` rows are sharded by the generator's
position among the run's generators (row ``k`` belongs to generator ``k % count``),
so no row is used twice across the cluster; ``cycle`` and ``random`` use every row
on every generator.
"""

from __future__ import annotations

import random
from typing import Any

from schemas.plan import DataFeed


class Exhausted(Exception):
    """A ``unique`` feed has no row left for this generator."""


def shard(rows: list[dict[str, Any]], index: int, count: int) -> list[dict[str, Any]]:
    """This generator's rows of a unique feed: every ``count``-th, from ``index``."""
    if count <= 1:
        return list(rows)
    return rows[index % count :: count]


class Feed:
    __slots__ = ("mode", "per", "rows", "pos", "rng")

    def __init__(self, feed: DataFeed, index: int = 0, count: int = 1, seed: int = 0) -> None:
        self.mode = feed.mode
        self.per = feed.per
        self.rows = shard(feed.rows, index, count) if feed.mode == "unique" else list(feed.rows)
        self.pos = 0
        self.rng = random.Random(seed)

    def next(self) -> dict[str, Any]:
        rows = self.rows
        if not rows:
            raise Exhausted()
        if self.mode == "random":
            return rows[self.rng.randrange(len(rows))]
        if self.mode == "unique":
            if self.pos >= len(rows):
                raise Exhausted()
            row = rows[self.pos]
            self.pos += 1
            return row
        row = rows[self.pos % len(rows)]
        self.pos += 1
        return row

    def remaining(self) -> int | None:
        """Rows left in a unique feed (None: never runs out)."""
        return len(self.rows) - self.pos if self.mode == "unique" else None


class Feeds:
    """All of a plan's feeds for one generator."""

    def __init__(self, feeds: list[DataFeed], index: int = 0, count: int = 1, seed: int = 0) -> None:
        self.feeds = [Feed(f, index, count, seed + i) for i, f in enumerate(feeds)]

    def draw(self, per: str) -> dict[str, Any]:
        """Variables from the next row of every feed read ``per`` user or iteration."""
        out: dict[str, Any] = {}
        for feed in self.feeds:
            if feed.per == per:
                out.update(feed.next())
        return out

    def has(self, per: str) -> bool:
        return any(f.per == per for f in self.feeds)
