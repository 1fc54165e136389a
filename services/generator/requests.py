"""A plan's requests as the engine uses them: the weighted table that picks the next
one, and each one's checks compiled once (allowed statuses, body needle)."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.generator.http import Connection

TABLE_SIZE = 1000  # arrivals per cycle of the weighted request table


def weighted_table(weights: list[int], size: int = TABLE_SIZE, seed: int = 0) -> list[int]:
    """A shuffled cycle of request-name indexes in proportion to their weights.

    Exact when the reduced weights fit in ``size`` (they are repeated to fill it);
    otherwise largest-remainder apportionment, keeping at least one slot for every
    positive weight so that no request kind is silently never sent.
    """
    positive = [w for w in weights if w > 0]
    if not positive:
        raise ValueError("no positive weight")
    g = 0
    for w in positive:
        g = math.gcd(g, w)
    reduced = [w // g for w in weights]
    total = sum(reduced)
    if total <= size:
        counts = [w * max(1, size // total) for w in reduced]
    else:
        quotas = [size * w / total for w in reduced]
        counts = [max(1, int(q)) if w > 0 else 0 for q, w in zip(quotas, reduced)]
        order = sorted(range(len(weights)), key=lambda i: quotas[i] - int(quotas[i]), reverse=True)
        for i in order[: max(size - sum(counts), 0)]:
            if reduced[i] > 0:
                counts[i] += 1
    table = [i for i, n in enumerate(counts) for _ in range(n)]
    random.Random(seed).shuffle(table)
    return table


def checked(conn: Connection, status: int, check: tuple[frozenset[int] | None, bytes | None]) -> str | None:
    allowed, needle = check
    if allowed is None:
        if status >= 400:
            return "status"
    elif status not in allowed:
        return "status"
    if needle is not None and needle not in conn.body_bytes():  # type: ignore[attr-defined]
        return "check"
    return None


def check_of(checks) -> tuple[frozenset[int] | None, bytes | None] | None:
    """(allowed statuses, body needle), or None for the default (any status below 400)."""
    if checks is None or (checks.status is None and not checks.body_contains):
        return None
    status = checks.status
    allowed = None
    if status is not None:
        allowed = frozenset(status if isinstance(status, list) else [status])
    needle = checks.body_contains.encode() if checks.body_contains else None
    return allowed, needle
