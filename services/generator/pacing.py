"""Intended send times from a rate profile. Pure: no clock, no event loop.

Arrival ``i`` (0-based) is intended at the time ``t`` where the cumulative arrival
count N(t) = ∫ rate·share equals ``i``. For a constant rate r that is i / r, so
every whole second holds exactly r arrivals — the open model, as wrk2 paces it,
generalised to linear ramps (N is quadratic there and inverted in closed form).

A live rate change or rebalance *rebases* the schedule: N stays continuous at the
moment of change and follows the new profile × share from then on, so no arrival
is skipped or repeated across the change.
"""

from __future__ import annotations

import math

from schemas.control import Segment

INF = math.inf


class _Piece:
    __slots__ = ("t0", "t1", "r0", "slope", "n0", "n1", "inv")

    def __init__(self, t0: float, t1: float, r0: float, r1: float, n0: float) -> None:
        self.t0, self.t1, self.r0 = t0, t1, r0
        self.slope = (r1 - r0) / (t1 - t0) if t1 > t0 else 0.0
        self.n0 = n0
        self.n1 = n0 + (r0 + r1) / 2 * (t1 - t0)
        # a constant rate: time_of is t0 + (n - n0) · inv, inline in Schedule.time_of
        self.inv = 1.0 / r0 if self.slope == 0.0 and r0 > 0 else 0.0

    def count_at(self, t: float) -> float:
        dt = t - self.t0
        return self.n0 + self.r0 * dt + self.slope * dt * dt / 2

    def time_of(self, n: float) -> float:
        m = n - self.n0
        if m <= 0:
            return self.t0
        if abs(self.slope) < 1e-12:
            return self.t0 + m / self.r0 if self.r0 > 0 else INF
        disc = self.r0 * self.r0 + 2 * self.slope * m
        if disc < 0:  # a falling ramp that never reaches n
            return INF
        denom = self.r0 + math.sqrt(disc)
        return self.t0 + (2 * m / denom if denom > 0 else INF)


class Schedule:
    """Cumulative arrivals N(t) over run-relative seconds for one generator."""

    def __init__(self, profile: list[Segment], share: float, from_s: float = 0.0, n0: float = 0.0):
        self.profile, self.share = profile, share
        self._pieces: list[_Piece] = []
        n = n0
        for seg in profile:
            t0 = max(seg.start_s, from_s)
            if seg.end_s <= t0:
                continue
            span = seg.end_s - seg.start_s
            r_at_t0 = seg.start_rps + (seg.end_rps - seg.start_rps) * (t0 - seg.start_s) / span
            piece = _Piece(t0, seg.end_s, r_at_t0 * share, seg.end_rps * share, n)
            self._pieces.append(piece)
            n = piece.n1
        self.start_s = from_s
        self.end_s = self._pieces[-1].t1 if self._pieces else from_s
        self._n_start = n0
        self.total = n  # N at the end of the schedule
        self._cursor = 0
        self._current: _Piece | None = None  # the piece the last time_of landed in

    @property
    def start_count(self) -> float:
        """N at the schedule's start: arrivals numbered below it belong to what came before
        (a rebased schedule continues its predecessor's count)."""
        return self._n_start

    def count_at(self, t: float) -> float:
        """N(t): arrivals intended before ``t`` (fractional)."""
        if t <= self.start_s or not self._pieces:
            return self._n_start
        for piece in self._pieces:
            if t < piece.t1:
                return piece.count_at(t)
        return self.total

    def arrivals_between(self, t0: float, t1: float) -> int:
        """Whole arrivals with intended time in [t0, t1)."""
        return math.ceil(self.count_at(t1) - 1e-9) - math.ceil(self.count_at(t0) - 1e-9)

    def time_of(self, i: int) -> float:
        """Intended time of arrival ``i``; INF when the schedule ends before it.

        Calls are expected in increasing ``i``: the current piece answers them in
        O(1) (inline for a constant rate, the pacer's common case).
        """
        piece = self._current
        if piece is not None and piece.n0 <= i < piece.n1 - 1e-9:
            if piece.inv:
                return piece.t0 + (i - piece.n0) * piece.inv
            return piece.time_of(i)
        return self._time_of_search(i)

    def _time_of_search(self, i: int) -> float:
        pieces = self._pieces
        k = self._cursor
        while k < len(pieces):
            piece = pieces[k]
            if i < piece.n1 - 1e-9:
                if i < piece.n0 and k > 0:  # went backwards: search from the start
                    k = 0
                    continue
                self._cursor = k
                self._current = piece
                return piece.time_of(i)
            k += 1
        self._cursor = max(len(pieces) - 1, 0)
        return INF

    def params(self) -> tuple[list[Segment], float, float, float]:
        """What rebuilds this schedule elsewhere (a worker process): ``Schedule(*params)``."""
        return self.profile, self.share, self.start_s, self._n_start

    def rebased(self, at_s: float, profile: list[Segment], share: float) -> Schedule:
        """A schedule equal to this one before ``at_s`` and ``profile × share`` after."""
        return Schedule(profile, share, from_s=at_s, n0=self.count_at(at_s))
