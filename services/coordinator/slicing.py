"""Splitting a run's rate among generators. Pure.

Shares sum to 1. By default every generator gets the same share (the open model
needs each generator to be able to carry its part; capacities only tilt the split
when generators report different ones, e.g. pods with more cores).
"""

from __future__ import annotations

from collections.abc import Mapping


def shares(capacities: Mapping[str, float]) -> dict[str, float]:
    """Share per generator id, proportional to capacity (even when all are equal)."""
    if not capacities:
        return {}
    ids = sorted(capacities)
    caps = [max(capacities[i], 0.0) for i in ids]
    total = sum(caps)
    if total <= 0 or len(set(caps)) == 1:
        return {i: 1.0 / len(ids) for i in ids}
    return {i: c / total for i, c in zip(ids, caps)}


def pick(available: Mapping[str, float], wanted: int | None) -> list[str]:
    """Which idle generators a new run takes: all of them, or the ``wanted`` biggest."""
    ids = sorted(available, key=lambda i: (-available[i], i))
    return ids if wanted is None else ids[:wanted]

