"""The generator's own CPU, second by second: this process and its engine workers.

Read once per interval (``take``), not per request: a handful of ``/proc`` reads. The
figure is % of one core over the wall time since the previous take, so 100 × cores is
every core the engines may use busy. The report's ``hosts`` section flags a generator
above 90 % of its cores as the limit of the run (docs/monitor.md).
"""

from __future__ import annotations

import os
import time

import psutil


def engine_cores(workers: int) -> int:
    """Cores the engines can use: one per engine process, at most the CPUs we may run on."""
    try:
        allowed = len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        allowed = psutil.cpu_count() or 1
    return max(1, min(workers, allowed))


class CpuMeter:
    def __init__(self) -> None:
        self.proc = psutil.Process()
        self._children: dict[int, psutil.Process] = {}
        self._gone_s = 0.0  # CPU of children that exited, so the total never goes back
        self._last_cpu = self._total()
        self._last_at = time.monotonic()

    def _total(self) -> float:
        t = self.proc.cpu_times()
        total = t.user + t.system
        try:
            now = {c.pid: c for c in self.proc.children(recursive=True)}
        except psutil.Error:
            now = {}
        for pid, child in now.items():
            self._children.setdefault(pid, child)
        for pid in list(self._children):
            child = self._children[pid]
            try:
                ct = child.cpu_times()
                used = ct.user + ct.system
                child.last_s = used  # type: ignore[attr-defined]
                total += used
            except psutil.Error:  # exited: keep what it had used
                self._gone_s += getattr(child, "last_s", 0.0)
                del self._children[pid]
        return total + self._gone_s

    def take(self) -> float | None:
        """% of one core since the last take; None when it cannot be read."""
        try:
            cpu = self._total()
        except psutil.Error:
            return None
        now = time.monotonic()
        dt = now - self._last_at
        used = cpu - self._last_cpu
        self._last_cpu, self._last_at = cpu, now
        if dt <= 0:
            return None
        return round(max(used, 0.0) / dt * 100.0, 1)
