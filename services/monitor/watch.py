"""Monitor depth: TCP states per watched port, TCP retransmits, named processes, JVM heap.

What JMeter-agent platforms watch on a target host beyond CPU and memory:

* ``SURGE_MONITOR_PORTS=8080,5432``: sockets per TCP state whose local *or* remote port
  is one of these (the server's side and a client's side of the same port both count),
  from the same pass over ``/proc/net/tcp`` that counts the host's states;
* TCP retransmits: ``RetransSegs`` and ``OutSegs`` of ``/proc/net/snmp`` (cumulative
  counters of the kernel), turned into per-second rates by ``to_sample``;
* ``SURGE_MONITOR_PROCESSES=java,postgres``: every process whose name (or the base name
  of its executable) is one of these, added up per name: CPU, RSS, threads, open files;
* for a watched process that is a JVM, heap in use and GC counts from the JDK's
  ``jstat -gc`` when ``jstat`` is on the PATH. Without it (or when the JVM belongs to
  another user and refuses the attach) ``jvm`` is null; nothing else changes.

Parsing is pure (``parse_*``); ``ProcessWatch`` and ``Jstat`` do the reading.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable

import psutil
import structlog
from msgspec import Struct

from schemas.host import JvmSample

log = structlog.get_logger(__name__)


class WatchedCounters(Struct, frozen=True):
    """One watched process in one reading (cumulative CPU; the rest as read)."""

    pid: int
    name: str  # the configured name it matched
    cpu_s: float
    rss_bytes: int
    threads: int
    open_files: int | None


# --- pure -------------------------------------------------------------------------


def port_of(address: str) -> int:
    """The port of a /proc/net/tcp address such as ``0100007F:1F90`` (-> 8080)."""
    return int(address.rsplit(":", 1)[1], 16)


def parse_snmp_tcp(text: str) -> tuple[int, int] | None:
    """(RetransSegs, OutSegs) from the text of /proc/net/snmp, None when absent."""
    lines = [line.split() for line in text.splitlines() if line.startswith("Tcp:")]
    if len(lines) < 2:
        return None
    row = dict(zip(lines[0][1:], lines[1][1:], strict=False))
    try:
        return int(row["RetransSegs"]), int(row["OutSegs"])
    except (KeyError, ValueError):
        return None


def parse_jstat_gc(text: str) -> JvmSample | None:
    """A JvmSample from ``jstat -gc PID`` output (header line, value line; sizes in KB)."""
    rows = [line.split() for line in text.strip().splitlines()]
    if len(rows) < 2:
        return None
    row = dict(zip(rows[0], rows[-1], strict=False))

    def num(key: str) -> float:
        value = row.get(key, "-")
        return 0.0 if value in ("-", "") else float(value)

    try:
        used = sum(num(k) for k in ("S0U", "S1U", "EU", "OU"))
        capacity = sum(num(k) for k in ("S0C", "S1C", "EC", "OC"))
        return JvmSample(
            heap_used_bytes=int(used * 1024), heap_capacity_bytes=int(capacity * 1024),
            young_gc=int(num("YGC")), full_gc=int(num("FGC")), gc_time_s=round(num("GCT"), 3),
        )
    except ValueError:
        return None


def matches(proc_name: str, exe: str, cmdline0: str, names: Iterable[str]) -> str | None:
    """The configured name a process answers to, or None."""
    candidates = {proc_name, os.path.basename(exe), os.path.basename(cmdline0)}
    for name in names:
        if name in candidates:
            return name
    return None


# --- reading ------------------------------------------------------------------------


class ProcessWatch:
    """Finds the processes of the configured names, each reading."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = [n for n in (s.strip() for s in names) if n]
        self._denied_fds: set[int] = set()  # pids whose fds we may not count: not retried

    def read(self) -> list[WatchedCounters]:
        if not self.names:
            return []
        found = []
        for proc in psutil.process_iter(["name", "exe", "cmdline"]):
            try:
                info = proc.info
                cmdline = info.get("cmdline") or [""]
                name = matches(info.get("name") or "", info.get("exe") or "", cmdline[0],
                               self.names)
                if name is None:
                    continue
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    rss = proc.memory_info().rss
                    threads = proc.num_threads()
                    fds = self._fds(proc)
                found.append(WatchedCounters(proc.pid, name, cpu.user + cpu.system, int(rss),
                                             threads, fds))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        order = {name: i for i, name in enumerate(self.names)}
        found.sort(key=lambda w: (order[w.name], w.pid))  # the sample lists them as configured
        return found

    def _fds(self, proc: psutil.Process) -> int | None:
        if proc.pid in self._denied_fds:
            return None
        try:
            return proc.num_fds()
        except psutil.AccessDenied:
            self._denied_fds.add(proc.pid)
            return None


class Jstat:
    """``jstat -gc`` for a JVM, at most every ``every_s`` per pid (jstat starts a JVM of
    its own: ~0.3 s of CPU a call, too dear for every second)."""

    def __init__(self, every_s: float = 5.0, timeout_s: float = 5.0) -> None:
        self.path = shutil.which("jstat")
        self.every_s = every_s
        self.timeout_s = timeout_s
        self._last: dict[int, tuple[float, JvmSample | None]] = {}
        if self.path is None:
            log.info("no jstat on the PATH: JVM heap and GC are not sampled")

    def sample(self, pid: int) -> JvmSample | None:
        if self.path is None:
            return None
        now = time.monotonic()
        last = self._last.get(pid)
        if last is not None and now - last[0] < self.every_s:
            return last[1]
        result: JvmSample | None = None
        try:
            out = subprocess.run([self.path, "-gc", str(pid)], capture_output=True, text=True,
                                 timeout=self.timeout_s, check=False)
            if out.returncode == 0:
                result = parse_jstat_gc(out.stdout)
            elif last is None:  # said once per JVM, not every few seconds
                log.info("jstat failed", pid=pid, error=(out.stderr or out.stdout).strip()[:200])
        except (OSError, subprocess.TimeoutExpired) as exc:
            if last is None:
                log.info("jstat failed", pid=pid, error=str(exc))
        self._last = {p: v for p, v in self._last.items() if now - v[0] < 60 * self.every_s}
        self._last[pid] = (now, result)
        return result
