"""Membership under stalls (services/coordinator/registry.py): gone only on evidence.

The clocks are injected: the coordinator's local clock and the server timestamps of
heartbeats move exactly as in the scenario each test names.
"""

from __future__ import annotations

import msgspec

from schemas import subjects
from schemas.control import Heartbeat
from services.coordinator.registry import Registry


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def beat(gid: str) -> bytes:
    return msgspec.json.encode(Heartbeat(id=gid, host="h", pid=1, cores=1, version="x",
                                         started_at=0.0, sent_at=0.0, capacity_rps=100.0))


def fleet(n: int) -> list[str]:
    return [f"g{i:02d}" for i in range(n)]


def beats_between(ids: list[str], t0: float, t1: float) -> list[tuple[float, str]]:
    """Every generator beats once a second at its own offset, as the server stores them."""
    out = []
    n = len(ids)
    k = int(t0)
    while k < t1 + 1:
        for i, gid in enumerate(ids):
            t = k + i / n
            if t0 <= t < t1:
                out.append((t, gid))
        k += 1
    return sorted(out)


def test_a_two_second_pause_then_a_backlog_read_in_chunks_loses_nobody():
    """50 generators; the coordinator's loop stops for 2 s; then it reads the queued
    beats 10 at a time and judges its members between chunks (as a busy loop does)."""
    clock = Clock()
    reg = Registry(dead_after_s=2.2, clock=clock, wall=clock)
    ids = fleet(50)
    for t, gid in beats_between(ids, 0.0, 10.0):  # read as they come
        clock.t = t
        reg.update(gid, beat(gid), stored_at=t)
        assert t < 1.0 or reg.gone(ids) == []
    clock.t = 12.0  # the pause: beats stored in [10, 12) wait unread
    backlog = beats_between(ids, 10.0, 12.0)
    assert reg.gone(ids) == []  # nothing read yet: the bus time has not moved
    for start in range(0, len(backlog), 10):
        for t, gid in backlog[start:start + 10]:
            reg.update(gid, beat(gid), stored_at=t)
        clock.t += 0.01
        assert reg.gone(ids) == [], f"declared lost after reading {start + 10} queued beats"


def test_a_generator_that_stops_beating_is_gone_once_the_others_go_on():
    clock = Clock()
    reg = Registry(dead_after_s=2.2, clock=clock, wall=clock)
    ids = fleet(5)
    for t, gid in beats_between(ids, 0.0, 3.0):
        clock.t = t
        reg.update(gid, beat(gid), stored_at=t)
    dead = "g02"
    for t, gid in beats_between(ids, 3.0, 6.0):
        clock.t = t
        if gid != dead:
            reg.update(gid, beat(gid), stored_at=t)
        if reg.gone(ids):
            break
    assert reg.gone(ids) == [dead]
    assert 2.4 + 2.2 <= clock.t < 2.4 + 2.2 + 0.3  # its last beat (2.4 s) + dead_after
    assert dead not in reg.alive()


def test_silence_from_everyone_is_judged_in_healthy_time_only():
    clock = Clock()
    reg = Registry(dead_after_s=2.2, silent_after_s=7.0, clock=clock, wall=clock)
    reg.update("g1", beat("g1"), stored_at=0.0)
    clock.t = 6.0
    assert reg.gone(["g1"]) == []  # the bus or the generator: cannot tell yet
    reg.stalled(3.0)  # three of those seconds our own loop did not run
    clock.t = 9.0
    assert reg.gone(["g1"]) == []
    clock.t = 10.5
    assert reg.gone(["g1"]) == ["g1"]


def test_a_reconnect_grace_judges_nobody():
    clock = Clock()
    reg = Registry(dead_after_s=2.2, clock=clock, wall=clock)
    reg.update("g1", beat("g1"), stored_at=0.0)
    reg.update("g2", beat("g2"), stored_at=5.0)
    clock.t = 5.0
    reg.touch_all(extra_s=2.2)
    assert reg.gone(["g1", "g2"]) == []
    clock.t = 7.3
    assert reg.gone(["g1", "g2"]) == ["g1"]


def test_a_deleted_key_is_gone_at_once():
    reg = Registry(dead_after_s=2.2)
    reg.update("g1", beat("g1"))
    reg.update("g1", None)
    assert reg.gone(["g1"]) == ["g1"]


def in_phase(reg: Registry, clock: Clock, ids: list[str], until: float, dead: str = "",
             dead_after: float = 0.0) -> None:
    """Every one of ``ids`` beats on the whole second (started together, as a cluster's
    generators do), ``dead`` not after ``dead_after``; each beat read as it is stored."""
    t = 0.0
    while t < until:
        clock.t = t
        for gid in ids:
            if gid != dead or t <= dead_after:
                reg.update(gid, beat(gid), stored_at=t)
        t += 1.0
    clock.t = until


def test_a_member_killed_just_after_its_beat_is_overdue_at_dead_after_and_the_bus_stamp_settles_it():
    """Beats in phase: the next evidence after 10.0 + 2.2 was the others' beat at 13.0, so
    a share moved 3.2 s after such a kill. Overdue at 12.2; the bus's stamp condemns it."""
    clock = Clock()
    reg = Registry(dead_after_s=2.2, clock=clock, wall=clock)
    ids = ["a", "b", "c"]
    in_phase(reg, clock, ids, 12.1, dead="a", dead_after=10.0)
    assert not reg.overdue(ids)  # 2.1 s since its beat was read: not yet
    clock.t = 12.25
    assert reg.gone(ids) == []  # the others' newest beat (12.0) is no evidence
    assert reg.overdue(ids) and not reg.overdue(["b", "c"])
    reg.update(subjects.BUS_CLOCK_KEY, None, stored_at=12.26)  # the stamp, read back
    assert reg.gone(ids) == ["a"]
    assert not reg.overdue(["b", "c"])


def test_a_stamp_read_after_a_late_beat_condemns_nobody():
    """The member's beat stored before the stamp is read before it (stored order): a beat
    read late (a slow watch, a CPU-starved coordinator) is never taken for a death."""
    clock = Clock()
    reg = Registry(dead_after_s=2.2, clock=clock, wall=clock)
    in_phase(reg, clock, ["a", "b"], 10.5)
    clock.t = 12.3
    assert reg.overdue(["a", "b"])  # nothing read since 10.0 (the watch lags)
    reg.update("a", beat("a"), stored_at=11.0)
    reg.update("b", beat("b"), stored_at=11.0)
    reg.update("a", beat("a"), stored_at=12.0)
    reg.update("b", beat("b"), stored_at=12.0)
    reg.update(subjects.BUS_CLOCK_KEY, None, stored_at=12.31)
    assert reg.gone(["a", "b"]) == [] and not reg.overdue(["a", "b"])


def test_nobody_is_overdue_during_a_grace_or_in_our_own_stall():
    clock = Clock()
    reg = Registry(dead_after_s=2.2, clock=clock, wall=clock)
    in_phase(reg, clock, ["a"], 10.5)
    reg.touch_all(extra_s=2.2)  # a reconnect at 10.5
    clock.t = 12.5
    assert not reg.overdue(["a"])
    reg.stalled(3.0)  # our loop did not run for 3 of the seconds since
    clock.t = 14.0
    assert not reg.overdue(["a"])
    clock.t = 15.3
    assert reg.overdue(["a"])
