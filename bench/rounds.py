"""Alternating rounds: the bench's side-by-side figures, each side the median of its rounds.

On a VM a minute can be 15 % slower than the next, so one run of wrk followed by one
run of Surge compares two minutes as much as two clients. ``alternate`` runs the sides
in turn, round after round (wrk, Surge, …, wrk, Surge, …), and ``summary`` makes each
side's figures the median of its rounds: a slow minute moves one round of each side,
not the ratio. Pure: the runs are the caller's functions.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

SUMMED = ("requests",)  # counts over the rounds; every other number is a median
JOINED = ("per_second", "server_per_second")  # second-by-second lists, round after round


def alternate(rounds: int, sides: list[tuple[str, Callable[[], dict]]],
              attempt: Callable[[dict, str, Callable[[], dict]], dict]) -> dict[str, list[dict]]:
    """Run each side once per round, in turn; ``attempt(into, key, fn)`` runs one and
    stores its figures (or ``{"error": ...}``) under ``key``. Returns each side's rounds."""
    out: dict[str, list[dict]] = {name: [] for name, _ in sides}
    for k in range(rounds):
        for name, fn in sides:
            one: dict = {}
            attempt(one, f"{name} round {k + 1}", fn)
            out[name].append(one[f"{name} round {k + 1}"])
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summary(rounds: list[dict]) -> dict:
    """One side's figures from its rounds: every number the median of the rounds that
    ran (``requests`` their sum), the per-second lists joined, anything else the first
    round's (counts by kind summed); ``rounds`` keeps each round's own. All rounds failed: the last error."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return {"error": rounds[-1]["error"] if rounds else "no rounds", "rounds": rounds}
    out: dict = {}
    for key in ok[0]:
        values = [r[key] for r in ok if key in r]
        if key in JOINED:
            out[key] = [x for v in values if isinstance(v, list) for x in v]
        elif all(_number(v) for v in values):
            out[key] = sum(values) if key in SUMMED else statistics.median(values)
        elif all(isinstance(v, dict) and all(_number(n) for n in v.values()) for v in values):
            out[key] = {}  # counts by kind (errors): summed
            for v in values:
                for kind, n in v.items():
                    out[key][kind] = out[key].get(kind, 0) + n
        else:
            out[key] = values[0]
    out["rounds"] = rounds
    if len(ok) < len(rounds):
        out["rounds_failed"] = len(rounds) - len(ok)
    return out


def per_round_ratios(a: list[dict], b: list[dict], key: str) -> list[float | None]:
    """``a[k][key] / b[k][key]`` round by round (None where either side failed)."""
    return [round(x[key] / y[key], 3) if x.get(key) and y.get(key) else None for x, y in zip(a, b)]
