"""The open model's arrival cursor, one for every engine: which arrival is next and when
it is due, written once.

A ``Schedule`` (pacing.py) says when arrival ``i`` is intended; the cursor walks it:
``i`` is the oldest arrival not yet sent (or dropped), ``t`` its schedule time (NaN:
not looked up yet) and ``at`` the loop time it is due (``INF``: none left). Nothing is
stored per arrival: the arrivals waiting for a free connection are simply the range
from ``i`` up to now, so a backlog costs no memory and an engine behind its schedule
catches up at closed-loop speed.

* **Stride.** With ``SURGE_WORKERS=N`` engine ``w`` of ``N`` sends arrivals ``w, w + N,
  …`` of the same schedule (``ArrivalCursor(first=w, stride=N)``), so the N engines
  send exactly its arrivals between them. A restarted worker starts with ``skip``: the
  arrivals numbered below it are not its own any more.
* **Rebase.** ``rebase(schedule)`` follows a new schedule from now on. The new one
  continues the old one's count (``Schedule.rebased``): arrivals numbered below its
  ``start_count`` that still wait keep the intended time of the schedule they fell due
  under (``history``), and the next one follows the new schedule, so nothing is
  skipped or doubled across any number of rebases.
* **Stop.** ``stop(rel)``: no arrival due after schedule time ``rel`` is sent; the ones
  due before still are (a drain).
* **Drop.** ``drop_until(limit)``: the waiting arrivals due by ``limit`` will never be
  sent (waited past the timeout); returns their numbers as a ``range`` — ``tally``
  counts a range per request spec, with one numpy ``bincount`` for a long one (an
  overloaded target drops thousands at once).
"""

from __future__ import annotations

import collections
import math

import numpy as np

from services.generator.pacing import INF, Schedule

NAN = math.nan
BULK = 64  # a drop range longer than this many arrivals is counted with numpy


class ArrivalCursor:
    """The next arrival of one engine's share of a schedule (see the module's doc)."""

    __slots__ = ("schedule", "t0", "stride", "i", "t", "at", "stop_rel", "history")

    def __init__(self, first: int = 0, stride: int = 1) -> None:
        self.stride = max(int(stride), 1)
        self.i = first % self.stride  # the next arrival not yet sent (or dropped)
        self.schedule: Schedule | None = None
        self.t0 = 0.0  # loop time of schedule time 0 (the run's start)
        self.t = NAN  # schedule time of arrival i; NaN: not looked up yet
        self.at = INF  # loop time arrival i is due; INF: none (or not started)
        self.stop_rel = INF  # arrivals due after this schedule time are not sent
        # schedules replaced by a rebase while arrivals of theirs still waited: arrival
        # n < boundary keeps the intended time its schedule gave it
        self.history: collections.deque[tuple[int, Schedule]] = collections.deque()

    def start(self, schedule: Schedule, t0: float, skip: float = 0.0) -> None:
        """Arrival n is due at ``t0 + schedule.time_of(n)``. ``skip``: arrivals numbered
        below it are not this cursor's to send (a worker restarted mid-run)."""
        if skip > 0:
            first = math.ceil(skip - 1e-9)
            self.i = first + (self.i - first) % self.stride
        self.schedule, self.t0 = schedule, t0
        self.t, self.at = NAN, t0  # the first look happens at t0 at the latest

    def rebase(self, schedule: Schedule) -> None:
        """Follow ``schedule`` (which continues the current one's count) from now on."""
        old, self.schedule = self.schedule, schedule
        if old is not None and self.i < schedule.start_count:
            self.history.append((math.ceil(schedule.start_count - 1e-9), old))
        self.t, self.at = NAN, 0.0  # the next look finds the arrival under the new schedule

    def stop(self, rel: float) -> None:
        """Nothing due after schedule time ``rel`` is sent."""
        self.stop_rel = min(self.stop_rel, rel)
        if self.t == self.t and self.t > self.stop_rel:
            self.at = INF

    def intended(self, n: int) -> float:
        """Schedule time of arrival ``n`` (under the schedule it fell due under)."""
        for boundary, sched in self.history:
            if n < boundary:
                return sched.time_of(n)
        return self.schedule.time_of(n)  # type: ignore[union-attr]

    def head(self) -> float:
        """Schedule time of the next arrival (``INF``: the schedule has none left)."""
        t = self.t
        if t != t:  # NaN: after a start or a rebase
            t = self.t = self.intended(self.i)
            self.at = self.t0 + t if t <= self.stop_rel else INF
        return t

    def advance(self) -> float:
        """Arrival ``i`` is gone (sent, dropped, failed): the next one's schedule time."""
        i = self.i + self.stride
        self.i = i
        history = self.history
        if history:
            t = self.intended(i)
            while history and i >= history[0][0]:
                history.popleft()
        else:
            t = self.schedule.time_of(i)  # type: ignore[union-attr]
        self.t = t
        self.at = self.t0 + t if t <= self.stop_rel else INF
        return t

    def waiting(self, rel: float) -> int:
        """Arrivals due by schedule time ``rel`` and not yet sent (the backlog)."""
        sched = self.schedule
        if sched is None:
            return 0
        due = sched.count_at(min(rel, self.stop_rel))
        return max(0, math.ceil((due - 1e-9 - self.i) / self.stride))

    def drop_until(self, limit: float) -> range:
        """Skip the waiting arrivals due by schedule time ``limit`` (``min`` with the stop):
        they will never be sent. Returns their numbers."""
        limit = min(limit, self.stop_rel)
        start = i = self.i
        stride = self.stride
        t = self.head()
        if t > limit or t == INF:
            return range(start, start, stride)
        if not self.history:  # a whole range at once (an overloaded target)
            end = math.ceil(self.schedule.count_at(limit) - 1e-9)  # type: ignore[union-attr]
            if end > i + BULK * stride:
                i += -(-(end - i) // stride) * stride
                t = self.schedule.time_of(i)  # type: ignore[union-attr]
        while t <= limit and t != INF:
            i += stride
            t = self.intended(i)
        self.i, self.t = i, t
        self.at = self.t0 + t if t <= self.stop_rel else INF
        history = self.history
        while history and i >= history[0][0]:
            history.popleft()
        return range(start, i, stride)


def owned(lo: float, hi: float, first: int, stride: int) -> range:
    """The numbers of worker ``first``'s arrivals (every ``stride``-th) in the counts ``[lo, hi)``."""
    a = math.ceil(lo - 1e-9)
    a += (first - a) % stride
    return range(a, math.ceil(hi - 1e-9), stride)


def tally(numbers: range, table: list[int], table_array: np.ndarray, into: list[int]) -> None:
    """Add arrivals ``numbers`` to ``into``, per request spec (``table[n % len(table)]``)."""
    n_table = len(table)
    if len(numbers) > BULK:
        drawn = table_array[np.arange(numbers.start, numbers.stop, numbers.step) % n_table]
        for name_i, n in enumerate(np.bincount(drawn, minlength=len(into)).tolist()):
            into[name_i] += n
        return
    for n in numbers:
        into[table[n % n_table]] += 1
