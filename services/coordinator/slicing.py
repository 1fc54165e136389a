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



def pool_shortfall(
    wanted: Mapping[str, str], count: int | None, idle: Mapping[str, Mapping[str, str]],
    busy: int,
) -> str | None:
    """Why a plan's generators cannot be had now, or None when they can.

    ``idle``: each idle generator's labels; ``busy``: how many others are in runs.
    The message names the selector and what is there, so the user can fix either.
    """
    matching = sorted(g for g, labels in idle.items() if all(labels.get(k) == v for k, v in wanted.items()))
    need = count or 1
    if len(matching) >= need:
        return None
    selector = ",".join(f"{k}={v}" for k, v in sorted(wanted.items()))
    asked = f"{count} generator{'s' if count != 1 else ''}" if count else "generators"
    if selector:
        asked += f" labelled {selector}"
    if not idle:
        there = "no idle generators are registered"
    else:
        pools: dict[str, int] = {}
        for labels in idle.values():
            key = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(no labels)"
            pools[key] = pools.get(key, 0) + 1
        there = f"{len(idle)} idle: " + "; ".join(f"{n} × {key}" for key, n in sorted(pools.items()))
        if selector:
            there += f" ({len(matching)} match)"
    if busy:
        there += f"; {busy} busy in other runs"
    return f"plan asks for {asked}; {there}"


def split(
    total_rps: float, capacities: Mapping[str, float], held: Mapping[str, float]
) -> tuple[float, dict[str, float]]:
    """Shares when some generators hold a rate of their own (per-generator control).

    Generators in ``held`` run at that rate (0: stopped); the others share what is left
    of ``total_rps`` by capacity. Returns (the total, share per generator): the total
    grows to the held rates' sum when they exceed it or nobody is left to share.
    """
    members = sorted(capacities)
    free = [g for g in members if g not in held]
    held_sum = sum(held[g] for g in members if g in held)
    total = max(total_rps, held_sum) if free else held_sum
    free_shares = shares({g: capacities[g] for g in free})
    rest = total - held_sum
    rates = {g: (held[g] if g in held else rest * free_shares[g]) for g in members}
    if total <= 0:  # nothing to send now: shares only matter once a rate comes back
        return 0.0, {g: free_shares.get(g, 0.0) for g in members}
    return total, {g: min(rates[g] / total, 1.0) for g in members}
