"""The web UI at scale: 10 runs' history and 50 generators, in a real Chromium.

    python -m bench.ui_scale [--runs 10] [--generators 50] [--seconds 600] [--updates 20]

Starts a real nats-server and the UI process, publishes synthetic LiveSnapshots
(``runs`` x ``seconds`` of them, ``generators`` generators each, one of them lost half
way) on ``surge.live.<run>``, then measures what a browser pays:

* the history a late joiner gets: the size of the ``live-history`` frame and how long
  the UI takes to send it;
* opening the live view: from navigation to the last second's numbers on screen;
* each live update afterwards (one snapshot of every run every ``1/rate`` s): main-thread
  time per update from Chrome's own counters (CDP ``Performance.getMetrics``:
  TaskDuration, ScriptDuration, Layout), and the longest animation frame seen;
* the hosts page with ``generators`` hosts sampled once a second, the same way;
* the UI process's RSS once it holds all that history.

It prints figures and writes nothing; it never fails on a number. Traffic stays on
127.0.0.1; everything it starts, it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec
import nats
import psutil

from schemas import subjects
from schemas.host import HostSample, NetIO, ProcessSample
from schemas.stats import LiveGenerator, LiveRequest, LiveSnapshot

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
NATS_SERVER = str(Path(sys.executable).parent / "nats-server")
CHROMIUM = "/usr/bin/chromium"
REQUESTS = ("home", "search", "product", "cart", "checkout")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_port(port: int, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing on 127.0.0.1:{port}")


def snapshot(run_id: str, seq: int, gens: list[str], lost_at: int, rng: random.Random) -> LiveSnapshot:
    per_gen = 2000.0 / len(gens)
    generators = {}
    for i, gid in enumerate(gens):
        if i == 0 and seq >= lost_at:
            generators[gid] = LiveGenerator(target_rps=0, rps=0, sent=0, late=0, dropped=0,
                                            p99_ms=None, behind=False, lost=True)
            continue
        rps = per_gen * rng.uniform(0.9, 1.02)
        generators[gid] = LiveGenerator(
            target_rps=per_gen, rps=round(rps), sent=round(rps), late=rng.randrange(3),
            dropped=0, p99_ms=round(rng.uniform(8, 40), 3), behind=i == 1 and seq % 7 == 0)
    rps = sum(g.rps for g in generators.values())
    per_request = {n: LiveRequest(rps=rps / len(REQUESTS), errors=rng.randrange(2),
                                  p50_ms=round(rng.uniform(2, 5), 3), p90_ms=round(rng.uniform(6, 12), 3),
                                  p99_ms=round(rng.uniform(15, 40), 3)) for n in REQUESTS}
    return LiveSnapshot(
        run_id=run_id, plan_name="scale-" + run_id, state="running", seq=seq, at=time.time() - 600 + seq,
        elapsed_s=seq + 1.0, duration_s=3600.0, target_rps=2000.0, rps=rps, requests=int(rps),
        errors=3, error_rate=3 / max(rps, 1), late=5, dropped=0, in_flight=40,
        p50_ms=round(rng.uniform(2, 5), 3), p90_ms=round(rng.uniform(6, 12), 3),
        p99_ms=round(rng.uniform(15, 40), 3), max_ms=round(rng.uniform(50, 90), 3),
        total_requests=int(2000 * (seq + 1)), total_errors=3 * (seq + 1),
        per_request=per_request, generators=generators,
        events=[f"generator {gens[0]} lost"] if seq == lost_at else [],
    )


def host_sample(name: str, rng: random.Random) -> HostSample:
    cpu = rng.uniform(20, 95)
    return HostSample(
        host=name, ts=time.time(), interval_s=1.0, cores=8, cpu_pct=cpu,
        cpu_per_core=[rng.uniform(0, 100) for _ in range(8)], iowait_pct=0.5, load1=2.0, load5=1.5,
        load15=1.0, mem_total_bytes=16 << 30, mem_used_bytes=6 << 30, mem_pct=37.5, swap_pct=0.0,
        net={"eth0": NetIO(rx_bps=rng.uniform(1e6, 1e8), tx_bps=rng.uniform(1e6, 1e8), rx_pps=1e4,
                           tx_pps=1e4, errors_in=0, errors_out=0, drops_in=0, drops_out=0)},
        tcp={"ESTABLISHED": rng.randrange(50, 500), "TIME_WAIT": rng.randrange(100), "LISTEN": 6},
        open_fds=300, processes=[ProcessSample(pid=100, name="generator", cpu_pct=cpu, rss_bytes=200 << 20)],
    )


class WS:
    """A bearer-less WebSocket client of the UI (no token in the bench)."""

    def __init__(self, base: str) -> None:
        self.base = base

    async def first(self, topic: str) -> tuple[str, float]:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(self.base + "/ws", max_msg_size=0) as ws:
                t0 = time.perf_counter()
                await ws.send_json({"sub": [topic]})
                msg = await ws.receive(timeout=30)
                return msg.data, time.perf_counter() - t0


async def metrics(cdp) -> dict[str, float]:
    return {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}


# Two views of the frames: the gaps between animation frames (what a user sees), and
# Chromium's long-animation-frame entries (LoAF, frames over 50 ms), which say where a
# long frame's time went. A gap far longer than any LoAF is time the page was not running.
FRAME_WATCH = """() => { window.__frames = []; window.__loaf = []; let last = performance.now();
  const tick = (t) => { window.__frames.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  if (PerformanceObserver.supportedEntryTypes.includes('long-animation-frame')) {
    const since = performance.now();  // not the frame the watch was installed in
    new PerformanceObserver((list) => { for (const e of list.getEntries()) if (e.startTime >= since) window.__loaf.push({
      duration: e.duration, blocking: e.blockingDuration,
      script: e.scripts.reduce((a, s) => a + s.duration, 0),
      forced_layout: e.scripts.reduce((a, s) => a + s.forcedStyleAndLayoutDuration, 0),
      style_layout: e.styleAndLayoutStart ? e.startTime + e.duration - e.styleAndLayoutStart : 0,
      render: e.renderStart ? e.startTime + e.duration - e.renderStart : 0,
      top: e.scripts.slice().sort((a, b) => b.duration - a.duration).slice(0, 2).map(
        (s) => `${s.invoker || s.invokerType} ${Math.round(s.duration)}ms`) }); })
      .observe({type: 'long-animation-frame'}); } }"""


async def frame_figures(page, prefix: str) -> dict:
    """The longest gap between animation frames, and the longest LoAF broken down."""
    frames = await page.evaluate("window.__frames")
    loaf = await page.evaluate("window.__loaf")
    out = {f"{prefix}_longest_frame_ms": round(max(frames[1:] or [0]), 1),
           f"{prefix}_long_frames": len(loaf)}
    if loaf:
        worst = max(loaf, key=lambda e: e["duration"])
        out[f"{prefix}_longest_loaf"] = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in worst.items()}
        out[f"{prefix}_loaf_total_ms"] = round(sum(e["duration"] for e in loaf), 1)
    return out


async def main_async(args) -> dict:
    from playwright.async_api import async_playwright

    rng = random.Random(7)
    tmp = Path(tempfile.mkdtemp(prefix="surge-ui-scale-"))
    nport, uport = free_port(), free_port()
    procs: list[subprocess.Popen] = []
    out: dict = {"runs": args.runs, "generators": args.generators, "seconds": args.seconds}
    try:
        procs.append(subprocess.Popen([NATS_SERVER, "-js", "-sd", str(tmp / "js"), "-a", "127.0.0.1",
                                       "-p", str(nport)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        await wait_port(nport)
        url = f"nats://127.0.0.1:{nport}"
        ui = subprocess.Popen([PY, "-m", "services.ui"], cwd=ROOT, env={
            **os.environ, "SURGE_NATS_URL": url, "SURGE_UI_PORT": str(uport), "SURGE_LOG_LEVEL": "warning",
            "SURGE_UI_HISTORY": str(args.seconds)}, stdout=open(tmp / "ui.log", "wb"), stderr=subprocess.STDOUT)
        procs.append(ui)
        await wait_port(uport)
        base = f"http://127.0.0.1:{uport}"
        ws = WS(base)
        nc = await nats.connect(url)
        gens = [f"gen-{i:02d}-{rng.randrange(16**6):06x}" for i in range(args.generators)]
        runs = [f"scale-run-{i:02d}" for i in range(args.runs)]
        lost_at = args.seconds // 2

        # --- history: every run's seconds, one run at a time, each confirmed by the UI ---
        t0 = time.perf_counter()
        sizes = []
        for run in runs:
            for seq in range(args.seconds):
                data = msgspec.json.encode(snapshot(run, seq, gens, lost_at, rng))
                sizes.append(len(data))
                await nc.publish(subjects.live(run), data)
            await nc.flush()
            for _ in range(600):
                text, _ = await ws.first("runs")
                done = {s["run_id"]: s["seq"] for s in json.loads(text)["d"]}
                if done.get(run) == args.seconds - 1:
                    break
                await asyncio.sleep(0.05)
        out["publish_s"] = round(time.perf_counter() - t0, 2)
        out["snapshot_bytes"] = round(sum(sizes) / len(sizes))
        out["ui_rss_mb"] = round(psutil.Process(ui.pid).memory_info().rss / 2**20, 1)
        text, took = await ws.first("live:" + runs[0])
        out["history_frame_kb"] = round(len(text) / 1024, 1)
        out["history_frame_s"] = round(took, 3)

        async def live_updates(seq0: int, count: int, page) -> None:
            for k in range(count):
                for run in runs:
                    await nc.publish(subjects.live(run), msgspec.json.encode(
                        snapshot(run, seq0 + k, gens, lost_at, rng)))
                await nc.flush()
                await asyncio.sleep(1.0 / args.rate)  # the pace of the load being measured, not a wait

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Performance.enable")
            expected = f"{2000 * args.seconds:,}"
            t0 = time.perf_counter()
            await page.goto(f"{base}/runs/{runs[0]}")
            await page.wait_for_function(
                "(want) => { const v = document.querySelector('#kpi-total .v');"
                " return v && v.textContent === want && document.querySelector('#chart-gen .u-over'); }",
                arg=expected, timeout=60_000)
            out["live_open_s"] = round(time.perf_counter() - t0, 3)
            m0 = await metrics(cdp)
            await page.evaluate(FRAME_WATCH)
            await live_updates(args.seconds, args.updates, page)
            want = f"{2000 * (args.seconds + args.updates):,}"
            await page.wait_for_function(
                "(want) => document.querySelector('#kpi-total .v').textContent === want", arg=want, timeout=30_000)
            m1 = await metrics(cdp)
            n = args.updates
            out["live_update_task_ms"] = round(1000 * (m1["TaskDuration"] - m0["TaskDuration"]) / n, 1)
            out["live_update_script_ms"] = round(1000 * (m1["ScriptDuration"] - m0["ScriptDuration"]) / n, 1)
            out["live_update_layout_ms"] = round(1000 * (m1["LayoutDuration"] - m0["LayoutDuration"]) / n, 1)
            out.update(await frame_figures(page, "live"))
            out["live_js_heap_mb"] = round(m1["JSHeapUsedSize"] / 2**20, 1)
            out["live_surge_paint_ms"] = await page.evaluate(
                "() => (window.Surge && Surge.perf && Surge.perf.summary) ? Surge.perf.summary() : null")

            # --- hosts: one sample per host per second ----------------------------------
            hosts = [f"host-{i:02d}" for i in range(args.generators)]
            for _ in range(5):
                for hname in hosts:
                    await nc.publish(subjects.host(hname), msgspec.json.encode(host_sample(hname, rng)))
            await nc.flush()
            t0 = time.perf_counter()
            await page.goto(base + "/hosts")
            await page.wait_for_function(
                "(n) => document.querySelectorAll('[data-host] .u-over').length === n", arg=len(hosts),
                timeout=60_000)
            out["hosts_open_s"] = round(time.perf_counter() - t0, 3)
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Performance.enable")
            m0 = await metrics(cdp)
            await page.evaluate(FRAME_WATCH)
            for _ in range(args.host_seconds):
                for hname in hosts:
                    await nc.publish(subjects.host(hname), msgspec.json.encode(host_sample(hname, rng)))
                await nc.flush()
                await asyncio.sleep(1.0)  # monitors sample once a second
            m1 = await metrics(cdp)
            s = args.host_seconds
            out["hosts_task_ms_per_s"] = round(1000 * (m1["TaskDuration"] - m0["TaskDuration"]) / s, 1)
            out.update(await frame_figures(page, "hosts"))
            out["page_errors"] = errors
            await browser.close()
        await nc.close()
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--generators", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--rate", type=float, default=2.0, help="live updates per second")
    ap.add_argument("--host-seconds", type=int, default=10)
    args = ap.parse_args()
    out = asyncio.run(main_async(args))
    width = max(len(k) for k in out)
    for k, v in out.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
