"""Host sampling: psutil counters in (``read_counters``), a ``HostSample`` out (``to_sample``).

Reading is the only impure part and takes ~10 ms; turning two readings into a sample
(rates over the interval, CPU shares, per-process CPU) is pure and unit-tested.

TCP states come from ``/proc/net/tcp`` and ``tcp6`` directly: ``psutil.net_connections``
maps every socket to its process through each process's fd table, which is slow
(~10 ms and more with many connections) and needs root for other users' processes,
while the state counts alone need neither. Elsewhere psutil is used with an
``AccessDenied`` fallback to "unknown".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil
import structlog
from msgspec import Struct

from schemas.host import DiskIO, HostSample, JvmSample, NetIO, ProcessSample, WatchedProcess
from services.monitor.watch import Jstat, ProcessWatch, WatchedCounters, parse_snmp_tcp, port_of

log = structlog.get_logger(__name__)

#: /proc/net/tcp state codes, named as psutil names them
TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
    "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING", "0C": "NEW_SYN_RECV",
}


class CpuTimes(Struct, frozen=True):
    busy: float  # seconds, all states but idle and iowait (steal included)
    iowait: float
    total: float
    steal: float = 0.0


class ProcCounters(Struct, frozen=True):
    pid: int
    name: str  # the Surge service
    cpu_s: float  # user + system seconds since the process started
    rss_bytes: int


class Counters(Struct, frozen=True, kw_only=True):
    """One reading of the host's cumulative counters (everything psutil gives)."""

    ts: float  # unix seconds
    mono: float  # monotonic seconds, for the interval
    cpu: CpuTimes
    per_core: list[CpuTimes]
    load: tuple[float, float, float]
    mem_total_bytes: int
    mem_used_bytes: int
    mem_pct: float
    swap_pct: float
    disk: dict[str, tuple[int, int, int, int]]  # read bytes, write bytes, reads, writes
    disk_free_pct: float | None
    net: dict[str, tuple[int, int, int, int, int, int, int, int]]  # psutil's snetio order
    tcp: dict[str, int]
    open_fds: int | None
    processes: list[ProcCounters]
    tcp_ports: dict[int, dict[str, int]] = {}  # watched port -> state -> sockets
    tcp_segs: tuple[int, int] | None = None  # RetransSegs, OutSegs (cumulative)
    watched: list[WatchedCounters] = []
    jvm: dict[str, JvmSample] = {}  # watched name -> its JVM's heap and GC


# --- pure -------------------------------------------------------------------------


def cpu_split(times: object) -> CpuTimes:
    """psutil's cpu_times tuple -> busy/iowait/total seconds (guest is inside user on Linux)."""
    fields = times._asdict()  # type: ignore[attr-defined]
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    idle = fields.get("idle", 0.0)
    iowait = fields.get("iowait", 0.0)
    return CpuTimes(busy=total - idle - iowait, iowait=iowait, total=total,
                    steal=fields.get("steal", 0.0))


def _pct(part: float, whole: float) -> float:
    if whole <= 0:
        return 0.0
    return round(min(max(part / whole * 100.0, 0.0), 100.0), 2)


def _rate(cur: int, prev: int, dt: float) -> float:
    """Per-second rate; a counter that went backwards (wrapped, device reset) reads as 0."""
    return round(max(cur - prev, 0) / dt, 3) if dt > 0 else 0.0


def service_of(cmdline: Sequence[str]) -> str | None:
    """The Surge service a command line runs, or None for other processes.

    ``python -m services.generator`` -> "generator"; ``surge-service monitor`` ->
    "monitor"; the ``surge`` command -> "cli".
    """
    skip = False
    for i, arg in enumerate(cmdline):
        if skip:
            skip = False
            continue
        if arg.startswith("-m"):
            module = arg[2:] or (cmdline[i + 1] if i + 1 < len(cmdline) else "")
            if module.startswith("services."):
                return module.split(".")[1] or None
            return None
        base = os.path.basename(arg)
        if base == "surge-service":
            return cmdline[i + 1] if i + 1 < len(cmdline) else None
        if base == "surge":
            return "cli"
        if arg in ("-X", "-W"):  # interpreter options that take a value
            skip = True
        elif i > 0 and not arg.startswith("-"):
            return None  # a script that is not Surge's
    return None


def parse_tcp_table(text: str, into: dict[str, int],
                    ports: dict[int, dict[str, int]] | None = None) -> None:
    """Count connections per state from the text of /proc/net/tcp or tcp6; with
    ``ports`` (watched port -> counts), also per state of sockets whose local or remote
    port is watched."""
    for line in text.splitlines()[1:]:
        parts = line.split(None, 4)
        if len(parts) >= 4:
            state = TCP_STATES.get(parts[3].upper(), "NONE")
            into[state] = into.get(state, 0) + 1
            if ports:
                for port in {port_of(parts[1]), port_of(parts[2])}:
                    counts = ports.get(port)
                    if counts is not None:
                        counts[state] = counts.get(state, 0) + 1


def parse_file_nr(text: str) -> int | None:
    """Open file handles of the whole host, from /proc/sys/fs/file-nr (allocated - free)."""
    parts = text.split()
    if len(parts) < 2:
        return None
    return int(parts[0]) - int(parts[1])


def to_sample(prev: Counters, cur: Counters, host: str) -> HostSample:
    """The sample for the interval between two readings."""
    dt = cur.mono - prev.mono

    def cpu_pcts(a: CpuTimes, b: CpuTimes) -> tuple[float, float]:
        total = b.total - a.total
        return _pct(b.busy - a.busy, total), _pct(b.iowait - a.iowait, total)

    cpu_pct, iowait_pct = cpu_pcts(prev.cpu, cur.cpu)
    steal_pct = _pct(cur.cpu.steal - prev.cpu.steal, cur.cpu.total - prev.cpu.total)
    per_core = [
        cpu_pcts(a, b)[0] for a, b in zip(prev.per_core, cur.per_core, strict=False)
    ]
    disk = {}
    for dev, c in cur.disk.items():
        p = prev.disk.get(dev)
        if p is not None:
            disk[dev] = DiskIO(
                read_bps=_rate(c[0], p[0], dt), write_bps=_rate(c[1], p[1], dt),
                read_iops=_rate(c[2], p[2], dt), write_iops=_rate(c[3], p[3], dt),
            )
    net = {}
    for nic, c in cur.net.items():
        p = prev.net.get(nic)
        if p is not None:
            net[nic] = NetIO(
                tx_bps=_rate(c[0], p[0], dt), rx_bps=_rate(c[1], p[1], dt),
                tx_pps=_rate(c[2], p[2], dt), rx_pps=_rate(c[3], p[3], dt),
                errors_in=c[4], errors_out=c[5], drops_in=c[6], drops_out=c[7],
            )
    before = {(p.pid, p.name): p for p in prev.processes}
    processes = []
    for proc in cur.processes:
        was = before.get((proc.pid, proc.name))
        used = proc.cpu_s - was.cpu_s if was is not None and proc.cpu_s >= was.cpu_s else 0.0
        processes.append(ProcessSample(
            pid=proc.pid, name=proc.name,
            cpu_pct=round(used / dt * 100.0, 2) if dt > 0 else 0.0,
            rss_bytes=proc.rss_bytes,
        ))
    retrans_ps = out_ps = None
    if prev.tcp_segs is not None and cur.tcp_segs is not None:
        retrans_ps = _rate(cur.tcp_segs[0], prev.tcp_segs[0], dt)
        out_ps = _rate(cur.tcp_segs[1], prev.tcp_segs[1], dt)
    return HostSample(
        host=host,
        ts=round(cur.ts, 3),
        interval_s=round(dt, 3),
        cores=len(cur.per_core),
        cpu_pct=cpu_pct,
        cpu_per_core=per_core,
        iowait_pct=iowait_pct,
        steal_pct=steal_pct,
        load1=cur.load[0],
        load5=cur.load[1],
        load15=cur.load[2],
        mem_total_bytes=cur.mem_total_bytes,
        mem_used_bytes=cur.mem_used_bytes,
        mem_pct=cur.mem_pct,
        swap_pct=cur.swap_pct,
        disk=disk,
        disk_free_pct=cur.disk_free_pct,
        net=net,
        tcp=dict(sorted(cur.tcp.items())),
        open_fds=cur.open_fds,
        processes=sorted(processes, key=lambda p: (p.name, p.pid)),
        tcp_ports={str(port): dict(sorted(states.items()))
                   for port, states in sorted(cur.tcp_ports.items())},
        tcp_retrans_ps=retrans_ps,
        tcp_out_ps=out_ps,
        watched=watched_sample(prev, cur, dt),
    )


def watched_sample(prev: Counters, cur: Counters, dt: float) -> list[WatchedProcess]:
    """The named processes, added up per name (CPU over the interval of the pids seen in
    both readings)."""
    before = {(w.pid, w.name): w for w in prev.watched}
    out: dict[str, dict] = {}
    for w in cur.watched:
        agg = out.setdefault(w.name, {"count": 0, "cpu_s": 0.0, "rss": 0, "threads": 0,
                                      "fds": 0, "fds_known": True})
        was = before.get((w.pid, w.name))
        if was is not None and w.cpu_s >= was.cpu_s:
            agg["cpu_s"] += w.cpu_s - was.cpu_s
        agg["count"] += 1
        agg["rss"] += w.rss_bytes
        agg["threads"] += w.threads
        if w.open_files is None:
            agg["fds_known"] = False
        else:
            agg["fds"] += w.open_files
    return [
        WatchedProcess(
            name=name, count=a["count"],
            cpu_pct=round(a["cpu_s"] / dt * 100.0, 2) if dt > 0 else 0.0,
            rss_bytes=a["rss"], threads=a["threads"],
            open_files=a["fds"] if a["fds_known"] else None, jvm=cur.jvm.get(name),
        )
        for name, a in out.items()
    ]


# --- reading the host ----------------------------------------------------------------


def _excluded(name: str, prefixes: Iterable[str]) -> bool:
    return any(name.startswith(p) for p in prefixes)


class Reader:
    """Reads ``Counters`` from the host (its /proc when ``host_proc`` is given)."""

    def __init__(
        self,
        host_proc: str = "",
        data_dir: str = ".",
        net_exclude: Sequence[str] = (),
        disk_exclude: Sequence[str] = (),
        ports: Sequence[int] = (),
        processes: Sequence[str] = (),
        jstat_s: float = 5.0,
    ) -> None:
        if host_proc:
            psutil.PROCFS_PATH = host_proc  # psutil reads every /proc file through it
        self.proc = Path(psutil.PROCFS_PATH)
        self.data_dir = data_dir
        self.net_exclude = tuple(net_exclude)
        self.disk_exclude = tuple(disk_exclude)
        self.ports = tuple(ports)
        self.watch = ProcessWatch(processes)
        self.jstat = Jstat(jstat_s) if self.watch.names else None
        self._warned: set[str] = set()

    def _warn_once(self, what: str, exc: BaseException) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("cannot read host metric; reported as unknown", metric=what,
                        error=f"{type(exc).__name__}: {exc}")

    def read(self) -> Counters:
        ts, mono = time.time(), time.monotonic()
        vm = psutil.virtual_memory()
        tcp, ports = self._tcp()
        watched = self._watched()
        try:
            swap_pct = float(psutil.swap_memory().percent)
        except Exception as exc:  # no /proc/swaps or vmstat in some containers
            self._warn_once("swap", exc)
            swap_pct = 0.0
        return Counters(
            ts=ts,
            mono=mono,
            cpu=cpu_split(psutil.cpu_times()),
            per_core=[cpu_split(t) for t in psutil.cpu_times(percpu=True)],
            load=tuple(round(x, 2) for x in psutil.getloadavg()),  # type: ignore[arg-type]
            mem_total_bytes=int(vm.total),
            mem_used_bytes=int(vm.total - vm.available),
            mem_pct=float(vm.percent),
            swap_pct=swap_pct,
            disk=self._disk(),
            disk_free_pct=self._disk_free(),
            net=self._net(),
            tcp=tcp,
            tcp_ports=ports,
            tcp_segs=self._tcp_segs(),
            open_fds=self._open_fds(),
            processes=self._processes(),
            watched=watched,
            jvm=self._jvm(watched),
        )

    def _tcp_segs(self) -> tuple[int, int] | None:
        try:
            return parse_snmp_tcp((self.proc / "net" / "snmp").read_text())
        except OSError as exc:
            self._warn_once("net/snmp", exc)
            return None

    def _watched(self) -> list[WatchedCounters]:
        try:
            return self.watch.read()
        except Exception as exc:
            self._warn_once("processes", exc)
            return []

    def _jvm(self, watched: list[WatchedCounters]) -> dict[str, JvmSample]:
        """Each watched name's largest JVM (by RSS), when jstat is there."""
        if self.jstat is None or self.jstat.path is None:
            return {}
        biggest: dict[str, WatchedCounters] = {}
        for w in watched:
            if "java" in w.name.lower() or w.name in ("jvm",):
                if w.name not in biggest or w.rss_bytes > biggest[w.name].rss_bytes:
                    biggest[w.name] = w
        out = {}
        for name, w in biggest.items():
            sample = self.jstat.sample(w.pid)
            if sample is not None:
                out[name] = sample
        return out

    def _disk(self) -> dict[str, tuple[int, int, int, int]]:
        try:
            counters = psutil.disk_io_counters(perdisk=True) or {}
        except Exception as exc:
            self._warn_once("disk", exc)
            return {}
        return {
            dev: (c.read_bytes, c.write_bytes, c.read_count, c.write_count)
            for dev, c in counters.items() if not _excluded(dev, self.disk_exclude)
        }

    def _disk_free(self) -> float | None:
        try:
            return round(100.0 - psutil.disk_usage(self.data_dir).percent, 2)
        except Exception as exc:
            self._warn_once("disk_free", exc)
            return None

    def _net(self) -> dict[str, tuple[int, int, int, int, int, int, int, int]]:
        try:
            counters = psutil.net_io_counters(pernic=True) or {}
        except Exception as exc:
            self._warn_once("net", exc)
            return {}
        return {
            nic: (c.bytes_sent, c.bytes_recv, c.packets_sent, c.packets_recv,
                  c.errin, c.errout, c.dropin, c.dropout)
            for nic, c in counters.items() if not _excluded(nic, self.net_exclude)
        }

    def _tcp(self) -> tuple[dict[str, int], dict[int, dict[str, int]]]:
        states: dict[str, int] = {}
        ports: dict[int, dict[str, int]] = {p: {} for p in self.ports}
        found = False
        for name in ("tcp", "tcp6"):
            try:
                parse_tcp_table((self.proc / "net" / name).read_text(), states, ports)
                found = True
            except FileNotFoundError:
                continue  # no IPv6 on this host
            except OSError as exc:
                self._warn_once(f"net/{name}", exc)
        if found:
            return states, ports
        try:  # not Linux: psutil's way, which may need privileges
            for conn in psutil.net_connections(kind="tcp"):
                states[conn.status] = states.get(conn.status, 0) + 1
                for port in {conn.laddr.port if conn.laddr else 0,
                             conn.raddr.port if conn.raddr else 0}:
                    if port in ports:
                        ports[port][conn.status] = ports[port].get(conn.status, 0) + 1
        except (psutil.AccessDenied, PermissionError, OSError) as exc:
            self._warn_once("tcp", exc)
        return states, ports

    def _open_fds(self) -> int | None:
        try:
            return parse_file_nr((self.proc / "sys" / "fs" / "file-nr").read_text())
        except (OSError, ValueError) as exc:
            self._warn_once("open_fds", exc)
            return None

    def _processes(self) -> list[ProcCounters]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                name = service_of(proc.info.get("cmdline") or [])
                if name is None:
                    continue
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    rss = proc.memory_info().rss
                found.append(ProcCounters(proc.pid, name, cpu.user + cpu.system, int(rss)))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found
