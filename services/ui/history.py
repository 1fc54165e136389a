"""A run's recent seconds, kept as columns, for browsers that open the live view late.

Pure, no I/O. A live snapshot with 50 generators is ~7 KB of JSON; 600 of them sent as
they came would be a 4 MB frame per late joiner and 40 MB of memory for 10 runs. The
charts only need a few numbers per second, so ``RunHistory`` keeps one bounded column
per chart line (run totals, p99 per request name, req/s per generator), the seconds
where a generator was lost, the events, and the last snapshot whole (for the tables and
the numbers at the top). ``frame_data()`` is that as compact JSON (~50 bytes a second
plus ~6 per generator), encoded once and cached until the next second arrives.

Columns are aligned: entry i of every column is second ``seq[i]``; ``None`` where a
request name or a generator had nothing that second (absent, or lost: a gap).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import msgspec

from schemas.stats import LiveSnapshot

RUN_COLUMNS = ("target_rps", "rps", "p50_ms", "p90_ms", "p99_ms", "errors", "late", "dropped")
MAX_EVENTS = 200
MAX_SERIES = 500  # request names or generators tracked per run (a bound, not a target)


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


class RunHistory:
    def __init__(self, run_id: str, maxlen: int = 600) -> None:
        self.run_id = run_id
        self.maxlen = maxlen
        self.seq: deque[int] = deque(maxlen=maxlen)
        self.cols: dict[str, deque] = {c: deque(maxlen=maxlen) for c in RUN_COLUMNS}
        self.req: dict[str, deque] = {}  # name -> p99 ms
        self.gen: dict[str, deque] = {}  # generator id -> achieved req/s (None: absent/lost)
        self.behind: dict[str, deque[int]] = {}  # generator id -> seconds it was behind
        self.lost: dict[str, int] = {}  # generator id -> second it was first seen lost
        self.gaps: deque[int] = deque(maxlen=maxlen)  # seconds a generator was lost
        self.events: deque[tuple[int, str]] = deque(maxlen=MAX_EVENTS)
        self.last = "null"  # the newest snapshot, raw JSON
        self.last_seq = -1
        self._cached: str | None = None

    def __len__(self) -> int:
        return len(self.seq)

    def _series(self, table: dict[str, deque], key: str) -> deque | None:
        column = table.get(key)
        if column is None:
            if len(table) >= MAX_SERIES:
                return None
            # aligned with ``seq``: None for the seconds before it appeared
            column = table[key] = deque([None] * len(self.seq), maxlen=self.maxlen)
        return column

    def add(self, snap: LiveSnapshot, raw: str) -> None:
        """Take second ``snap.seq``. A repeat of the newest second replaces it; older ones
        (a late duplicate) change nothing but the events."""
        self._cached = None
        if snap.seq < self.last_seq:
            return
        if snap.seq == self.last_seq:
            self._pop()
        self.last, self.last_seq = raw, snap.seq
        for name in snap.per_request:  # new series first: padded to the seconds before
            self._series(self.req, name)
        for gid in snap.generators:
            self._series(self.gen, gid)
        self.seq.append(snap.seq)
        for name in RUN_COLUMNS:
            value = getattr(snap, name)
            self.cols[name].append(_r(value) if isinstance(value, float) else value)
        for name, column in self.req.items():
            r = snap.per_request.get(name)
            column.append(_r(r.p99_ms) if r is not None else None)
        gap = False
        for gid, column in self.gen.items():
            g = snap.generators.get(gid)
            if g is None or g.lost:
                column.append(None)
                if g is not None and gid not in self.lost:
                    self.lost[gid] = snap.seq
                    gap = True
                continue
            column.append(_r(g.rps, 1))
            if g.behind:
                self.behind.setdefault(gid, deque(maxlen=self.maxlen)).append(snap.seq)
        for event in snap.events:
            self.events.append((snap.seq, event))
            gap = gap or " lost" in event
        if gap:
            self.gaps.append(snap.seq)

    def _pop(self) -> None:
        """Forget the newest second (it is about to be replaced)."""
        seq = self.seq.pop()
        for column in (*self.cols.values(), *self.req.values(), *self.gen.values()):
            column.pop()
        for seconds in self.behind.values():
            if seconds and seconds[-1] == seq:
                seconds.pop()
        if self.gaps and self.gaps[-1] == seq:
            self.gaps.pop()
        while self.events and self.events[-1][0] == seq:
            self.events.pop()
        for gid in [g for g, at in self.lost.items() if at == seq]:
            del self.lost[gid]

    def frame_data(self) -> str:
        """The history as JSON: ``{"run_id", "seq", "cols", "req", "gen", "behind", "lost",
        "gaps", "events", "last"}``; cached until the next ``add``."""
        if self._cached is None:
            first = self.seq[0] if self.seq else 0
            body = msgspec.json.encode({
                "run_id": self.run_id,
                "seq": list(self.seq),
                "cols": {k: list(v) for k, v in self.cols.items()},
                "req": {k: list(v) for k, v in self.req.items()},
                "gen": {k: list(v) for k, v in self.gen.items()},
                "behind": {k: [s for s in v if s >= first] for k, v in self.behind.items() if v},
                "lost": self.lost,
                "gaps": [s for s in self.gaps if s >= first],
                "events": [[s, e] for s, e in self.events],
            }).decode()
            self._cached = body[:-1] + ',"last":' + self.last + "}"
        return self._cached


def history_of(snaps: Iterable[LiveSnapshot], maxlen: int = 600) -> RunHistory:
    """A history filled from snapshots (tests, tools)."""
    history: RunHistory | None = None
    for snap in snaps:
        if history is None:
            history = RunHistory(snap.run_id, maxlen)
        history.add(snap, msgspec.json.encode(snap).decode())
    return history or RunHistory("", maxlen)
