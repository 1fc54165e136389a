"""Intended send times from a rate profile. Pure: no clock, no event loop.

Arrival ``i`` (0-based) is intended at the time ``t`` where the cumulative arrival
count N(t) = ∫ rate·share equals ``i``. For a constant rate r that is i / r, so
every whole second holds exactly r arrivals — the open model, as wrk2 paces it,
generalised to linear ramps (N is quadratic there and inverted in closed form).

A live rate change or rebalance *rebases* the schedule: N stays continuous at the
moment of change and follows the new profile × share from then on, so no arrival
is skipped or repeated across the change.

Phases. Generator k of n runs N_k(t) = share·N(t) − phase_k (phase_k = k/n): its
arrivals fall where that crosses a whole number, so the n generators' arrivals
interleave and the merged stream is one generator's at the total rate (rate 1 on two
generators: one arrival a second, alternating), not n-request bursts. A rebase with a
phase keeps the next arrival's number and moves the count by less than one to the
phase the new profile × share gives at that moment, so generators that see a change
a few milliseconds apart still interleave, and nothing is skipped or doubled.

Poisson arrivals (``arrivals: poisson``): the count runs in *work units* u; arrival i
is at u_i = E_0 + … + E_i with E exponential(1), seeded. Mapping u through N⁻¹ gives a
(time-varying) Poisson process at the profile's rate; a rebase continues the same
u-sequence, so it is as exact as the uniform one.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

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
        if self.inv:  # the same arithmetic as Schedule.time_of's inline path
            return self.t0 + m * self.inv
        if abs(self.slope) < 1e-12:
            return self.t0 + m / self.r0 if self.r0 > 0 else INF
        disc = self.r0 * self.r0 + 2 * self.slope * m
        if disc < 0:  # a falling ramp that never reaches n
            return INF
        denom = self.r0 + math.sqrt(disc)
        return self.t0 + (2 * m / denom if denom > 0 else INF)


class Schedule:
    """Cumulative arrivals N(t) over run-relative seconds for one generator."""

    arrivals = "uniform"  # what ``from_params`` needs besides ``params()``
    seed = 0

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
        self.total = n  # N at the end of the schedule (arrivals, whole or not)
        self._n_end = n
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
        return self._n_end

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

    args: tuple[float, ...] = ()

    def rebased(self, at_s: float, profile: list[Segment], share: float,
                phase: float | None = None, slot: tuple[float, float] | None = None) -> Schedule:
        """A schedule equal to this one before ``at_s`` and ``profile × share`` after.

        With ``phase`` the count moves (by less than one, never past the next arrival's
        number) to ``share·N(at_s) − phase`` modulo one: the generators of a run stay
        interleaved whatever moment each of them applies the change at. With ``slot``
        (shares that differ) the generator owns that slice of the plan's own stream
        from now on (``OwnedSchedule``), its arrivals numbered on from the next one.
        """
        n0 = self.count_at(at_s)
        if slot is not None:
            return OwnedSchedule(profile, at_s, total_count(profile, at_s), Owned(*slot),
                                 first=math.ceil(n0 - 1e-9))
        if phase is not None:
            n0 = phased_count(n0, share * total_count(profile, at_s) - phase)
        return Schedule(profile, share, from_s=at_s, n0=n0)


def total_count(profile: list[Segment], t: float) -> float:
    """N(t) of the whole profile (share 1): arrivals the plan intends before ``t``."""
    n = 0.0
    for seg in profile:
        if t <= seg.start_s:
            break
        span = seg.end_s - seg.start_s
        dt = min(t, seg.end_s) - seg.start_s
        if span > 0:
            r1 = seg.start_rps + (seg.end_rps - seg.start_rps) * dt / span
            n += (seg.start_rps + r1) / 2 * dt
    return n


def phased_count(count: float, target: float) -> float:
    """The count in ``(c − 1, c]`` equal to ``target`` modulo one, where ``c`` is the
    number of the next arrival after ``count``: moving there neither skips nor repeats."""
    c = math.ceil(count - 1e-9)
    return c - ((c - target) % 1.0)


def start_schedule(profile: list[Segment], share: float, phase: float = 0.0, from_s: float = 0.0,
                   arrivals: str = "uniform", seed: int = 0,
                   slot: tuple[float, float] | None = None) -> Schedule:
    """A generator's schedule from ``from_s`` (0: the run's start; later: it joined a
    running test): at its phase (uniform, equal shares), owning ``slot`` of the plan's
    stream (uniform, shares that differ), or on its own seeded Poisson process."""
    if arrivals == "poisson":
        return PoissonSchedule(profile, share, from_s=from_s, seq=Exponentials(seed))
    if slot is not None:
        return OwnedSchedule(profile, from_s, total_count(profile, from_s) if from_s > 0 else 0.0,
                             Owned(*slot), first=0)
    n0 = -phase if from_s <= 0 else phased_count(0.0, share * total_count(profile, from_s) - phase)
    return Schedule(profile, share, from_s=from_s, n0=n0)


def from_params(profile: list[Segment], share: float, from_s: float, n0: float,
              arrivals: str = "uniform", seed: int = 0, args: tuple | list = ()) -> Schedule:
    """Rebuild a schedule from ``params()``, ``arrivals``, ``seed`` and ``args`` (a worker process)."""
    if arrivals == "owned":
        return OwnedSchedule(profile, from_s, n0, Owned(args[0], args[1]), first=int(args[2]))
    if arrivals == "poisson":
        return PoissonSchedule(profile, share, from_s=from_s, n0=n0, seq=Exponentials(seed))
    return Schedule(profile, share, from_s=from_s, n0=n0)


class Exponentials:
    """u_i = E_0 + … + E_i, E ~ exponential(1), the same in every process for one seed.

    Made in blocks of ``BLOCK`` from a generator seeded by (seed, block): a block can be
    made again anywhere, and only each block's start (8 bytes per ``BLOCK`` arrivals) and
    the last few blocks are kept, so a long run costs no memory per arrival.
    """

    BLOCK = 4096
    KEEP = 4  # blocks kept made (a rebase's history and the engine's cursor)

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.starts = [0.0]  # u before block b's first arrival
        self._made: dict[int, np.ndarray] = {}

    def _block(self, b: int) -> np.ndarray:
        got = self._made.get(b)
        if got is None:
            while len(self.starts) <= b:  # the blocks before are made, in order, once
                self._block(len(self.starts) - 1)
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, b])
            got = self.starts[b] + np.cumsum(rng.exponential(1.0, self.BLOCK))
            if len(self._made) >= self.KEEP:
                del self._made[min(self._made)]
            self._made[b] = got
            if len(self.starts) == b + 1:
                self.starts.append(float(got[-1]))
        return got

    def u_of(self, i: int) -> float:
        b, k = divmod(i, self.BLOCK)
        block = self._made.get(b)
        if block is None:
            block = self._block(b)
        return float(block[k])

    def count_below(self, u: float) -> int:
        """How many arrivals have u_i <= u."""
        if u <= 0:
            return 0
        while self.starts[-1] < u:
            self._block(len(self.starts) - 1)
        b = bisect.bisect_left(self.starts, u) - 1  # starts[b] < u <= starts[b + 1]
        return b * self.BLOCK + int(np.searchsorted(self._block(b), u, side="right"))


class PoissonSchedule(Schedule):
    """Exponential inter-arrival times at the profile × share rate: N counts work units
    (``Exponentials``), and arrival i is due when N reaches u_i."""

    def __init__(self, profile: list[Segment], share: float, from_s: float = 0.0, n0: float = 0.0,
                 seq: Exponentials | None = None) -> None:
        super().__init__(profile, share, from_s=from_s, n0=n0)
        self.seq = seq if seq is not None else Exponentials(0)
        self.arrivals, self.seed = "poisson", self.seq.seed
        self.total = float(self.seq.count_below(self._n_end))

    @property
    def start_count(self) -> float:
        return float(self.seq.count_below(self._n_start))

    def count_at(self, t: float) -> float:
        return float(self.seq.count_below(super().count_at(t)))

    def time_of(self, i: int) -> float:
        if i >= self.total:
            return INF
        return super().time_of(self.seq.u_of(i))  # type: ignore[arg-type]

    def rebased(self, at_s: float, profile: list[Segment], share: float,
                phase: float | None = None, slot: tuple[float, float] | None = None) -> Schedule:
        # the same u-sequence goes on: memoryless, and continuous in u at the change
        u = Schedule.count_at(self, at_s)
        return PoissonSchedule(profile, share, from_s=at_s, n0=u, seq=self.seq)



GOLDEN = 0x9E3779B97F4A7C15  # 2^64/φ (odd): j ↦ j·GOLDEN mod 2^64 spreads consecutive j evenly


class Owned:
    """The plan's arrivals (global numbers j = 0, 1, ...) that one generator owns when the
    run's shares differ: j is this generator's when frac(j/φ) falls in its slot
    [lo, hi) of [0, 1) — the coordinator's cumulative shares, so the run's slots
    partition [0, 1) and every arrival of the plan has exactly one owner. The golden
    ratio spreads each slot's arrivals evenly (Weyl sequence: a share s owns s·n ± O(log n)
    of any n consecutive arrivals), and the merged stream is exactly the plan's: no two
    generators ever send the same arrival, none closer than the plan's own gap.

    Integer arithmetic (uint64, wrapping) so every process agrees bit for bit; made in
    blocks, keeping each block's count (8 bytes per ``BLOCK`` plan arrivals).
    """

    BLOCK = 1 << 16
    KEEP = 4

    def __init__(self, lo: float, hi: float) -> None:
        self.lo_f, self.hi_f = lo, hi
        scale = float(1 << 64)
        self.lo = np.uint64(min(int(lo * scale), (1 << 64) - 1))
        self.top = hi >= 1.0  # the last slot runs to the end of the circle
        self.hi = np.uint64(min(int(hi * scale), (1 << 64) - 1))
        self.empty = hi <= lo
        self.counts = [0]  # owned arrivals before block b
        self._made: dict[int, np.ndarray] = {}

    def _block(self, b: int) -> np.ndarray:
        got = self._made.get(b)
        if got is None:
            while len(self.counts) <= b:
                self._block(len(self.counts) - 1)
            j = np.arange(b * self.BLOCK, (b + 1) * self.BLOCK, dtype=np.uint64)
            x = j * np.uint64(GOLDEN)  # wraps: frac(j/φ) · 2^64
            mine = (x >= self.lo) if self.top else ((x >= self.lo) & (x < self.hi))
            got = j[mine].astype(np.float64)
            if len(self._made) >= self.KEEP:
                del self._made[min(self._made)]
            self._made[b] = got
            if len(self.counts) == b + 1:
                self.counts.append(self.counts[b] + len(got))
        return got

    def u_of(self, k: int) -> float:
        """The plan-arrival number of this generator's arrival ``k``."""
        if self.empty:
            return INF
        while self.counts[-1] <= k:
            self._block(len(self.counts) - 1)
        b = bisect.bisect_right(self.counts, k) - 1
        return float(self._block(b)[k - self.counts[b]])

    def count_below(self, u: float) -> int:
        """How many of this generator's arrivals have a plan number below ``u``."""
        if self.empty or u <= 0:
            return 0
        n = math.ceil(u - 1e-9)  # plan arrivals 0 .. n-1 are below u
        b = n // self.BLOCK
        while len(self.counts) <= b:
            self._block(len(self.counts) - 1)
        return self.counts[b] + int(np.searchsorted(self._block(b), n, side="left"))


class OwnedSchedule(Schedule):
    """Uniform arrivals when the run's shares differ: the plan's schedule (share 1, N(t)
    the plan's count) and, of its arrivals, the ones this generator owns (``Owned``).
    Its own arrivals are numbered from ``first`` (what came before is an earlier
    schedule's), so a rebase goes on without skipping or repeating a number."""

    def __init__(self, profile: list[Segment], from_s: float, n0: float, seq: Owned,
                 first: int = 0) -> None:
        super().__init__(profile, 1.0, from_s=from_s, n0=n0)
        self.seq = seq
        self.first = first
        self.offset = first - seq.count_below(n0)
        self.total = float(seq.count_below(self._n_end) + self.offset)
        self.arrivals = "owned"
        self.args = (seq.lo_f, seq.hi_f, float(first))

    @property
    def start_count(self) -> float:
        return float(self.first)

    def count_at(self, t: float) -> float:
        return float(self.seq.count_below(super().count_at(t)) + self.offset)

    def time_of(self, i: int) -> float:
        if i >= self.total:
            return INF
        return super().time_of(self.seq.u_of(i - self.offset))  # type: ignore[arg-type]
