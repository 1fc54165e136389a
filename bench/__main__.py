"""``make bench``: Surge's engine side by side with wrk and Locust against one nginx, in one run.

    python -m bench [--quick] [--out bench/results/latest.json]

nginx (1 worker) is pinned to core 0, every client to core 1 (one core for
everything on a single-core machine). Each client runs in its own process for a
fixed time; CPU µs/request comes from that process's CPU time. It prints a table
and writes the JSON; it never fails on a number. Environment knobs:

    SURGE_BENCH_SECONDS   seconds per throughput run (default 8; --quick: 2)
    SURGE_BENCH_ROUNDS    the closed loop (wrk, Surge, the bare protocol) and Surge's open
                          model at the fixed rate run in this many alternating rounds of
                          SECONDS / ROUNDS each (default 3; --quick: 2); each side's figures
                          are the median of its rounds, and so are the ratios between them
    SURGE_BENCH_RSS_S     length of the RSS-growth run of a generator service at 20k
                          req/s (default 60; the issue's full figure: 600)
    SURGE_BENCH_CONNS     connections per client (default 64)
    SURGE_BENCH_WRK2      path of a wrk2 binary (else ``wrk2`` on PATH): when there is one,
                          it runs the same open-loop rates beside Surge, and its CPU per
                          request at 20k is the one Surge's stands beside

Every open-loop run is also counted by nginx itself, second by second (SecondCounter),
so Surge's and wrk2's per-second accuracy are measured by the same meter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.nginx import FlowNginx, Nginx, SecondCounter
from bench.rounds import alternate, per_round_ratios, summary
from bench.table import ratio, table

HERE = Path(__file__).resolve().parent
PY = sys.executable
WRK = shutil.which("wrk") or "/usr/bin/wrk"


def wrk2_bin() -> str | None:
    """wrk2 (Gil Tene's constant-throughput wrk) if there is one: not packaged by Debian."""
    path = os.environ.get("SURGE_BENCH_WRK2") or shutil.which("wrk2")
    if not path or not os.access(path, os.X_OK):
        return None
    proc = subprocess.run([path, "--help"], capture_output=True, text=True)
    usage = proc.stdout + proc.stderr
    return path if "--rate" in usage else None  # plain wrk has no -R


def machine() -> dict:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count() or 1, "usable_cores": len(os.sched_getaffinity(0)),
            "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release(), "loadavg_start": list(os.getloadavg())}


class Child:
    """Run a command; report its CPU seconds (from rusage of waited-for children) and wall."""

    def __init__(self, server_pids: list[int]) -> None:
        self.server_pids = server_pids

    def run(self, cmd: list[str], timeout: float) -> tuple[str, float, float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        srv0 = self._server_cpu()
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        server_pct = (self._server_cpu() - srv0) / wall * 100
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {proc.stderr[-600:]}")
        return proc.stdout, cpu, wall, server_pct

    def _server_cpu(self) -> float:
        total = 0.0
        for pid in self.server_pids:
            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total


def pin(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []


def run_wrk(child: Child, url: str, seconds: int, conns: int, core: int | None, port: int) -> dict:
    with SecondCounter(port) as counter:  # wrk has no per-second figures: nginx counts them
        out, cpu, wall, server_pct = child.run(
            pin(core) + [WRK, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", url], seconds + 30)
    res = _wrk_figures(out, cpu, wall, server_pct, r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$")
    return {**res, "per_second": counter.per_second(res["rps"] / 4)}


def run_wrk2(child: Child, wrk2: str, url: str, rate: float, seconds: int, conns: int,
             core: int | None) -> dict:
    out, cpu, wall, server_pct = child.run(
        pin(core) + [wrk2, "-t1", f"-c{conns}", f"-d{seconds}s", f"-R{int(rate)}", "--latency", url],
        seconds + 30)
    # wrk2's HdrHistogram of latency from each request's intended time
    res = _wrk_figures(out, cpu, wall, server_pct, r"^\s*(50|99)\.000%\s+([\d.]+)(us|ms|s)\s*$")
    return {"target_rps": rate, "achieved_rps": res.pop("rps"), **res}


def _wrk_figures(out: str, cpu: float, wall: float, server_pct: float, pct_line: str) -> dict:
    """The figures of a wrk or wrk2 run from its output; ``pct_line`` matches its
    50th and 99th percentile lines (the two print them differently)."""
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {p: _ms(v, u) for p, v, u in re.findall(pct_line, out, re.M)}
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "requests": total,
            "cpu_us_per_req": cpu / max(total, 1) * 1e6, "cpu_share": round(cpu / wall, 3),
            "p50_ms": lat.get("50"), "p99_ms": lat.get("99"), "server_cpu_pct": round(server_pct, 1)}


def counted(port: int, rate: float, fn, *args, **kw) -> dict:
    """Run an open-loop measurement with nginx counting its requests second by second."""
    with SecondCounter(port) as counter:
        result = fn(*args, **kw)
    secs = counter.per_second(rate / 2)
    result["server_per_second"] = secs
    result["server_worst_second_error_pct"] = (
        round(max(abs(c - rate) / rate * 100 for c in secs), 3) if secs else None)
    return result


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_surge(child: Child, mode: str, url: str, core: int | None, *args: str, timeout: float = 120) -> dict:
    core_args = [] if core is None else ["--core", str(core)]
    out, _, _, server_pct = child.run([PY, "-m", "bench.surge_run", mode, url, *core_args, *args], timeout)
    result = json.loads(out.strip().splitlines()[-1])
    result["server_cpu_pct"] = round(server_pct, 1)
    return result


def run_bare(child: Child, url: str, seconds: int, conns: int, core: int | None) -> dict:
    core_args = [] if core is None else ["--core", str(core)]
    out, _, _, server_pct = child.run(
        [PY, "-m", "bench.bare", url, "--seconds", str(seconds), "--conns", str(conns), *core_args],
        seconds + 30)
    result = json.loads(out.strip().splitlines()[-1])
    result["server_cpu_pct"] = round(server_pct, 1)
    return result


def run_rate_e2e(child: Child, url: str, changes: int, server_core: int | None,
                 client_core: int | None) -> dict:
    cores = [] if server_core is None else ["--server-core", str(server_core), "--client-core", str(client_core)]
    out, _, _, _ = child.run([PY, "-m", "bench.rate_e2e", url, "--changes", str(changes), *cores],
                             changes * 2.0 + 90)
    return json.loads(out.strip().splitlines()[-1])


def run_service_rss(child: Child, url: str, rate: float, seconds: int, server_core: int | None,
                    client_core: int | None) -> dict:
    cores = [] if server_core is None else ["--server-core", str(server_core), "--client-core", str(client_core)]
    out, _, _, _ = child.run([PY, "-m", "bench.service_rss", url, "--rate", str(rate),
                              "--seconds", str(seconds), *cores], seconds + 90)
    return json.loads(out.strip().splitlines()[-1])


def run_hotpath(child: Child, core: int | None, n: int) -> dict:
    core_args = [] if core is None else ["--core", str(core)]
    out, _, _, _ = child.run([PY, "-m", "bench.hotpath", "--n", str(n), *core_args], 120)
    return json.loads(out.strip().splitlines()[-1])


def run_flows(child: Child, seconds: int, users: int, server_core: int | None,
              client_core: int | None) -> dict:
    """The flow engine (one step, one JSONPath extraction) against the demo target, whose
    /api/products is a small JSON document; target and client pinned like the others."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = subprocess.Popen(pin(server_core) + [PY, "-m", "services.target"], cwd=HERE.parent,
                              env={**os.environ, "SURGE_TARGET_PORT": str(port)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline or target.poll() is not None:
                raise RuntimeError("the demo target did not start")
            time.sleep(0.05)
        out, _, _, _ = child.run(pin(client_core) + [
            PY, "-m", "bench.flows", f"http://127.0.0.1:{port}", "--seconds", str(seconds),
            "--users", str(users)], seconds + 60)
        return json.loads(out.strip().splitlines()[-1])
    finally:
        target.terminate()
        target.wait(10)


def run_flow3(child: Child, origin: str, seconds: int, users: int, core: int | None,
              *extra: str) -> dict:
    """The 3-step flow (bench/flows.py --flow three) against FlowNginx, one core."""
    out, _, _, _ = child.run(pin(core) + [
        PY, "-m", "bench.flows", origin, "--flow", "three", "--seconds", str(seconds),
        "--users", str(users), *extra], seconds + 60)
    return json.loads(out.strip().splitlines()[-1])


def run_templated(child: Child, origin: str, tls_origin: str, seconds: float, conns: int,
                  core: int | None) -> dict:
    """What a template or TLS costs a request on the fast engine and on the flow engine
    (bench/templated.py) against FlowNginx, one core."""
    out, _, _, _ = child.run(pin(core) + [
        PY, "-m", "bench.templated", "--origin", origin, "--tls-origin", tls_origin,
        "--seconds", str(seconds), "--conns", str(conns)], 6 * seconds + 60)
    return json.loads(out.strip().splitlines()[-1])


def run_locust_flow(child: Child, origin: str, seconds: int, users: int, core: int | None) -> dict:
    """Locust FastHttpUser running the same 3-step flow (bench/locustfile_flow.py)."""
    return run_locust(child, origin + "/x", seconds, users, core, HERE / "locustfile_flow.py")


def locust_bin() -> str | None:
    local = Path(PY).parent / "locust"
    return str(local) if local.exists() else shutil.which("locust")


def run_locust(child: Child, url: str, seconds: int, conns: int, core: int | None,
               locustfile: Path = HERE / "locustfile.py") -> dict:
    locust = locust_bin()
    if locust is None:
        raise RuntimeError("locust is not installed (pip install -e '.[bench]')")
    host = url.rsplit("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="surge-bench-locust-") as tmp:
        prefix = os.path.join(tmp, "run")
        _, cpu, wall, server_pct = child.run(
            pin(core) + [locust, "-f", str(locustfile), "--headless", "-u", str(conns),
                         "-r", str(conns), "-t", f"{seconds}s", "-H", host, "--csv", prefix,
                         "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"],
            seconds + 60)
        rows = Path(prefix + "_stats.csv").read_text().splitlines()
    header = rows[0].split(",")
    agg = next(r.split(",") for r in rows[1:] if ",Aggregated," in r)
    row = dict(zip(header, agg))
    total = int(row["Request Count"])
    return {"rps": float(row["Requests/s"]), "requests": total,
            "cpu_us_per_req": cpu / max(total, 1) * 1e6,
            "cpu_note": "whole process, startup included", "cpu_share": round(cpu / wall, 3),
            "p50_ms": float(row["50%"]), "p99_ms": float(row["99%"]),
            "failures": int(row["Failure Count"]), "server_cpu_pct": round(server_pct, 1)}


def attempt(results: dict, key: str, fn, *args, **kw):
    """Run one measurement; a failure is reported in the results, never raised."""
    print(f"  {key} ...", end="", flush=True, file=sys.stderr)
    t0 = time.monotonic()
    try:
        value = fn(*args, **kw)
    except Exception as exc:  # report, never fail
        value = {"error": f"{type(exc).__name__}: {exc}"}
    results[key] = value
    print(f" {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run at low rates")
    p.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    p.add_argument("--no-locust", action="store_true")
    args = p.parse_args(argv)
    quick = args.quick
    seconds = int(os.environ.get("SURGE_BENCH_SECONDS", "2" if quick else "8"))
    rounds = max(1, int(os.environ.get("SURGE_BENCH_ROUNDS", "2" if quick else "3")))
    round_s = max(1, round(seconds / rounds))
    rss_s = int(os.environ.get("SURGE_BENCH_RSS_S", "3" if quick else "60"))
    conns = int(os.environ.get("SURGE_BENCH_CONNS", "8" if quick else "64"))
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = (cores[0], cores[1]) if len(cores) > 1 else (cores[0], cores[0])

    res: dict = {"machine": machine(), "quick": quick, "seconds_per_run": seconds, "conns": conns,
                 "rounds": rounds, "seconds_per_round": round_s,
                 "pinning": {"nginx": server_core, "clients": client_core}, "peers": {}}
    t_start = time.monotonic()
    print(f"bench: nginx on core {server_core}, clients on core {client_core}, "
          f"{seconds} s per run, {conns} connections", file=sys.stderr)
    with Nginx(core=server_core) as nginx:
        workers = [c.pid for c in psutil.Process(nginx.proc.pid).children()] + [nginx.proc.pid]
        child = Child(workers)
        url = nginx.url
        peers = res["peers"]
        fixed = 1000.0 if quick else 20000.0
        open_s = max(seconds, 2) if quick else max(seconds, 6)
        # the closed loop side by side, and the open model at the fixed rate beside it: in
        # alternating rounds, so that a slow minute costs each side a round, not the ratio
        open_round_s = max(round_s, 2)  # its first second is the start
        sides = alternate(rounds, [
            ("wrk", lambda: run_wrk(child, url, round_s, conns, client_core, nginx.port)),
            ("surge_closed", lambda: run_surge(child, "closed", url, client_core, "--seconds", str(round_s),
                                               "--conns", str(conns), timeout=round_s + 60)),
            ("bare", lambda: run_bare(child, url, round_s, conns, client_core)),
            ("open_fixed", lambda: run_surge(child, "open", url, client_core, "--rate", str(fixed),
                                             "--seconds", str(open_round_s), "--conns", str(conns),
                                             timeout=open_round_s + 60)),
        ], attempt)
        for side in ("wrk", "surge_closed", "bare"):
            peers[side] = summary(sides[side])
        if args.no_locust:
            peers["locust"] = {"error": "skipped (--no-locust)"}
        else:
            attempt(peers, "locust", run_locust, child, url, seconds, conns, client_core)

        max_rps = peers["surge_closed"].get("rps") or 1000.0
        fractions = [0.05, 0.2] if quick else [0.1, 0.25, 0.5, 0.8]
        res["open_loop"] = []
        wrk2 = wrk2_bin()
        res["wrk2"] = wrk2 or "not installed (SURGE_BENCH_WRK2=/path/to/wrk2 adds its rows)"
        if wrk2:
            res["open_loop_wrk2"] = []

        def wrk2_at(rate: float) -> dict:  # wrk2 at a fixed rate, nginx counting its seconds
            return attempt({}, "wrk2", counted, nginx.port, rate, run_wrk2, child, wrk2, url, rate,
                           open_s, conns, client_core)

        for f in fractions:
            rate = max(100.0, round(max_rps * f / 100) * 100)
            if quick:
                rate = min(rate, 2000.0)
            r: dict = {}
            attempt(r, "run", counted, nginx.port, rate, run_surge, child, "open", url, client_core,
                    "--rate", str(rate), "--seconds", str(open_s), "--conns", str(conns), timeout=open_s + 60)
            r = r["run"]
            r["target_rps"] = rate
            r["fraction_of_closed_max"] = f
            res["open_loop"].append(r)
            if wrk2:
                w = wrk2_at(rate)
                res["open_loop_wrk2"].append({**w, "target_rps": rate, "fraction_of_closed_max": f})
        if wrk2 and not quick and peers.get("wrk", {}).get("rps"):
            # the control for the 80 % row: C's open model at 80 % of its own family's closed
            # loop, on the same machine in the same minutes. When this misses too, the row
            # measures the machine, not the client.
            rate = round(peers["wrk"]["rps"] * 0.8 / 100) * 100
            w = wrk2_at(rate)
            res["control_wrk2_at_80pct_of_wrk"] = {**w, "target_rps": rate}

        c20 = summary(sides["open_fixed"])
        res["cpu_at_20k"] = {
            "rate": fixed, "achieved_rps": c20.get("achieved_rps"),
            "surge_cpu_us_per_req": c20.get("cpu_us_per_req"), "error": c20.get("error"),
            # round by round, beside the closed loop's rounds it alternated with
            "rounds": [{k: r.get(k) for k in ("achieved_rps", "cpu_us_per_req", "p50_ms", "error") if k in r}
                       for r in sides["open_fixed"]],
            "open_cpu_ratio_rounds": per_round_ratios(sides["open_fixed"], sides["surge_closed"],
                                                      "cpu_us_per_req"),
        }
        if wrk2:
            peer = attempt({}, "wrk2_fixed", run_wrk2, child, wrk2, url, fixed, open_s, conns, client_core)
            res["cpu_at_20k"].update({"peer": "wrk2", "peer_cpu_us_per_req": peer.get("cpu_us_per_req"),
                                      "peer_note": f"wrk2 at the same {fixed:.0f} req/s"})
        else:
            res["cpu_at_20k"].update({"peer": "wrk", "peer_cpu_us_per_req": peers.get("wrk", {}).get("cpu_us_per_req"),
                                      "peer_note": "wrk2 not installed: wrk at full speed"})
        attempt(res, "rate_change", run_surge, child, "ratechange", url, client_core,
                "--rate", str(1000.0 if quick else min(20000.0, max_rps * 0.4)),
                "--changes", "5" if quick else "50", "--conns", str(conns), timeout=120)
        attempt(res, "rate_change_e2e", run_rate_e2e, child, url, 3 if quick else 50,
                server_core, client_core)
        attempt(res, "flows", run_flows, child, 2 if quick else 5, 8 if quick else 32,
                server_core, client_core)
        attempt(res, "hot_path", run_hotpath, child, client_core, 20_000 if quick else 200_000)
    flow_users = 8 if quick else 64
    flow_s = 2 if quick else seconds
    with FlowNginx(core=server_core) as fx:
        workers = [c.pid for c in psutil.Process(fx.proc.pid).children()] + [fx.proc.pid]
        fchild = Child(workers)
        rows: dict = {}
        attempt(rows, "plain", run_flow3, fchild, fx.origin, flow_s, flow_users, client_core)
        attempt(rows, "tls", run_flow3, fchild, fx.tls_origin, flow_s, flow_users, client_core,
                "--insecure", "--http2", "off")
        attempt(rows, "h2", run_flow3, fchild, fx.h2_origin, flow_s, flow_users, client_core,
                "--insecure", "--http2", "auto")
        attempt(rows, "h2c", run_flow3, fchild, fx.h2c_origin, flow_s, flow_users, client_core,
                "--http2", "h2c")
        # the closed model with think time: 200 users, 50 ms after every step
        attempt(rows, "think", run_flow3, fchild, fx.origin, flow_s, 40 if quick else 200,
                client_core, "--think", "0.05")
        if args.no_locust:
            rows["locust"] = {"error": "skipped (--no-locust)"}
        else:
            attempt(rows, "locust", run_locust_flow, fchild, fx.origin, flow_s, flow_users, client_core)
        res["flow3"] = rows
        attempt(res, "templated", run_templated, fchild, fx.origin, fx.tls_origin, 1 if quick else seconds,
                flow_users, client_core)
        attempt(res, "rss", run_service_rss, child, url, fixed, rss_s, server_core, client_core)

    surge = peers["surge_closed"].get("rps")
    wrk_rps, locust_rps = peers.get("wrk", {}).get("rps"), peers.get("locust", {}).get("rps")
    res.update({
        "surge_rps": surge, "wrk_rps": wrk_rps, "locust_rps": locust_rps,
        "bare_rps": peers.get("bare", {}).get("rps"),
        # every figure of wrk, Surge and the bare protocol is the median of its rounds
        "ratio_vs_wrk": ratio(surge, wrk_rps), "ratio_vs_locust": ratio(surge, locust_rps),
        "ratio_vs_wrk_rounds": per_round_ratios(sides["surge_closed"], sides["wrk"], "rps"),
        "bare_ratio_vs_wrk": ratio(peers.get("bare", {}).get("rps"), wrk_rps),
        "surge_cpu_us_per_req": peers["surge_closed"].get("cpu_us_per_req"),
        "wrk_cpu_us_per_req": peers.get("wrk", {}).get("cpu_us_per_req"),
        "locust_cpu_us_per_req": peers.get("locust", {}).get("cpu_us_per_req"),
        # CPU per request is what a shared or server-bound run cannot distort much
        "cpu_ratio_vs_wrk": ratio(peers.get("wrk", {}).get("cpu_us_per_req"),
                                  peers["surge_closed"].get("cpu_us_per_req")),
        "cpu_ratio_vs_locust": ratio(peers.get("locust", {}).get("cpu_us_per_req"),
                                     peers["surge_closed"].get("cpu_us_per_req")),
        "elapsed_s": round(time.monotonic() - t_start, 1),
    })
    # issue 17's rows: requests per CPU-second of the client (one core) for the 3-step flow
    f3 = res.get("flow3", {})
    flow_rps = f3.get("plain", {}).get("rps_per_cpu_s")
    res.update({
        "flow_rps": flow_rps,
        "flow_cpu_us": round(1e6 / flow_rps, 2) if flow_rps else None,
        "flow_tls_rps": f3.get("tls", {}).get("rps_per_cpu_s"),
        "h2_rps": f3.get("h2", {}).get("rps_per_cpu_s"),
        "closed_think_rps_vs_law": f3.get("think", {}).get("rps_vs_law"),
        "h2_protocol": f3.get("h2", {}).get("protocol"),
        "h2c_rps": f3.get("h2c", {}).get("rps_per_cpu_s"),  # the same without TLS
        "locust_flow_rps": f3.get("locust", {}).get("rps"),
        # per core on both sides: Locust's requests per CPU-second of its process
        "locust_flow_rps_per_cpu_s": (round(1e6 / f3["locust"]["cpu_us_per_req"], 1)
                                      if f3.get("locust", {}).get("cpu_us_per_req") else None),
        "flow_ratio_vs_locust": ratio(flow_rps, 1e6 / f3["locust"]["cpu_us_per_req"]
                                      if f3.get("locust", {}).get("cpu_us_per_req") else None),
        "open_cpu_us_20k": res.get("cpu_at_20k", {}).get("surge_cpu_us_per_req"),
        # templated static plans and https on the fast engine against the flow engine
        # (bench/templated.py: CPU µs per request, closed loop, one core)
        **{f"templated_{row}_cpu_us": res.get("templated", {}).get(row, {}).get("cpu_us_per_req")
           for row in ("static", "vars", "render", "render_flow", "tls", "tls_flow")},
        "open_cpu_ratio_vs_closed": ratio(res.get("cpu_at_20k", {}).get("surge_cpu_us_per_req"),
                                          peers["surge_closed"].get("cpu_us_per_req")),
    })
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))
    print(f"\nwrote {out} in {res['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
