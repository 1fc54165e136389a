"""What this generator can sustain, from what it measures: the coordinator splits by it.

The engine's CPU cost per request (this process and its engine workers, per second of
load) times the cores it may use gives the requests/s it could carry at full CPU. A
box whose requests cost more, or that has fewer cores, reports less and gets a smaller
share (``services/coordinator/slicing.py``). Seconds with little load are not measured:
fixed costs (heartbeats, timers) would make every request look expensive.
"""

from __future__ import annotations

import math
import os

import psutil

DEFAULT_CPU_US = 50.0  # before any measurement: ~20,000 requests/s per core (docs/engine.md)
MIN_REQUESTS = 1000  # a second with fewer completions says little about the cost of one
MIN_CPU_S = 0.05  # ... and so does a second with less CPU than this
ALPHA = 0.3  # weight of the newest measured second


class Capacity:
    """An exponentially weighted CPU cost per request, and the capacity it implies. Pure."""

    def __init__(self, usable_cores: float) -> None:
        self.usable_cores = max(usable_cores, 0.1)
        self.cpu_us: float | None = None

    def observe(self, requests: int, cpu_s: float) -> None:
        if requests < MIN_REQUESTS or cpu_s < MIN_CPU_S or not math.isfinite(cpu_s):
            return
        us = cpu_s * 1e6 / requests
        self.cpu_us = us if self.cpu_us is None else ALPHA * us + (1 - ALPHA) * self.cpu_us

    def cpu_us_per_request(self) -> float:
        """Measured µs of CPU per request (0: not measured yet)."""
        return round(self.cpu_us, 2) if self.cpu_us is not None else 0.0

    def rps(self) -> float:
        """Requests/s at full use of the usable cores, to two significant digits (so two
        like boxes report the same and split evenly, and a weaker one clearly less)."""
        raw = self.usable_cores * 1e6 / (self.cpu_us or DEFAULT_CPU_US)
        digits = 1 - int(math.floor(math.log10(raw)))
        return float(round(raw, digits))


class CapacityMeter:
    """Feeds a ``Capacity`` from what this process and its engine workers (children)
    spend: a mark when load begins, then one observation per second of load."""

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self._proc = psutil.Process()
        self._mark = self.cpu_seconds()

    def cpu_seconds(self) -> float:
        """CPU time of this process and its engine workers (children) so far."""
        total = 0.0
        for proc in [self._proc, *self._proc.children()]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total

    def mark(self) -> None:
        """Load begins now: the CPU spent idle before is not its cost."""
        self._mark = self.cpu_seconds()

    def observe_second(self, completed: int) -> None:
        """One second of load done, ``completed`` requests: what did a request cost?"""
        cpu = self.cpu_seconds()
        used, self._mark = cpu - self._mark, cpu
        self.capacity.observe(completed, used)


def usable_cores(workers: int, cpu_max_path: str = "/sys/fs/cgroup/cpu.max") -> float:
    """Cores this generator can use: its engine processes, at most the CPUs it may run
    on (affinity) and its cgroup's CPU quota (a Kubernetes limit)."""
    cores = float(len(os.sched_getaffinity(0)) or 1)
    try:
        with open(cpu_max_path, encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max" and float(period) > 0:
            cores = min(cores, float(quota) / float(period))
    except (OSError, ValueError):
        pass
    return min(float(max(workers, 1)), cores)
