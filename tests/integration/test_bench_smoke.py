"""`make bench` in miniature (seconds, low rates), so the harness cannot rot.

It checks the harness runs end to end and writes every key of its JSON; it checks
no speed: figures are for `make bench` on a quiet machine, never pass/fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

KEYS = {"surge_rps", "wrk_rps", "locust_rps", "ratio_vs_wrk", "ratio_vs_locust", "open_loop",
        "machine", "cpu_at_20k", "rate_change", "rate_change_e2e", "rss", "peers", "flows",
        # issue 17's rows
        "flow_rps", "flow_cpu_us", "flow_tls_rps", "h2_rps", "locust_flow_rps", "open_cpu_us_20k",
        "h2c_rps", "templated_render_cpu_us", "templated_render_flow_cpu_us", "templated_tls_cpu_us",
        "closed_think_rps_vs_law"}


@pytest.mark.skipif(not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")),
                    reason="nginx not installed (make debs)")
def test_quick_bench_writes_every_figure(tmp_path):
    out = tmp_path / "latest.json"
    env = dict(os.environ, SURGE_BENCH_SECONDS="1", SURGE_BENCH_RSS_S="2")
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--no-locust", "--out", str(out)],
                          capture_output=True, text=True, timeout=220, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert KEYS <= set(res)
    assert res["machine"]["cores"] >= 1 and res["machine"]["cpu_model"]
    assert "error" not in res["peers"]["surge_closed"], res["peers"]["surge_closed"]
    assert res["surge_rps"] > 0
    # the side-by-side rows are medians of alternating rounds (2 in --quick), kept round by round
    assert len(res["peers"]["surge_closed"]["rounds"]) == res["rounds"] == 2
    assert len(res["cpu_at_20k"]["rounds"]) == 2 and res["open_cpu_ratio_vs_closed"] > 0
    if shutil.which("wrk") or os.path.exists("/usr/bin/wrk"):
        assert res["wrk_rps"] > 0 and res["ratio_vs_wrk"] > 0
        assert len(res["ratio_vs_wrk_rounds"]) == 2 and all(r > 0 for r in res["ratio_vs_wrk_rounds"])
        assert "per_second" in res["peers"]["wrk"]  # counted by nginx (a 1-s run has no whole second)
    assert len(res["open_loop"]) >= 2
    assert "error" not in res["flows"] and res["flows"]["rps"] > 0, res["flows"]
    for row in ("plain", "tls", "h2", "h2c"):  # the 3-step flow over HTTP/1.1, TLS, HTTP/2 and h2c
        r = res["flow3"][row]
        assert "error" not in r and r["rps"] > 0, (row, r)
        assert row == "h2" or r["errors"] == 0, (row, r)
    assert res["flow3"]["h2"]["protocol"] == "h2" and res["flow3"]["h2c"]["protocol"] == "h2c"
    think = res["flow3"]["think"]  # the closed model with think time, beside its law
    assert "error" not in think and think["errors"] == 0 and think["law_rps"] > 0, think
    assert res["closed_think_rps_vs_law"] == think["rps_vs_law"] > 0
    assert res["flow_rps"] > 0 and res["flow_tls_rps"] > 0 and res["open_cpu_us_20k"] > 0
    for row, engine in (("render", "request"), ("render_flow", "users"), ("tls", "request")):
        r = res["templated"][row]  # a templated plan and an https one: a request per arrival
        assert r["engine"] == engine and r["errors"] == 0 and r["rps"] > 0, (row, r)
    for r in res["open_loop"]:
        assert "error" not in r, r
        assert {"target_rps", "achieved_rps", "worst_second_error_pct", "p99_ms"} <= set(r)
        assert r["achieved_rps"] > 0
    assert res["rate_change"]["changes"] == 5
    e2e = res["rate_change_e2e"]
    assert "error" not in e2e, e2e
    assert e2e["changes"] == e2e["seen"] == 3 and e2e["write_to_applied_p99_ms"] is not None
    assert res["rss"]["rss_end_mb"] > 0
    assert "Surge engine, closed loop" in proc.stdout


@pytest.mark.skipif(not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")),
                    reason="nginx not installed (make debs)")
def test_nginx_counts_an_open_run_second_by_second():
    """The bench's neutral meter: nginx's own request counter, read at whole seconds,
    sees Surge's open model at its rate, with the load's partial seconds left out."""
    from bench.__main__ import Child, counted, run_surge
    from bench.nginx import Nginx

    rate = 400.0
    with Nginx(core=None) as nginx:
        result = counted(nginx.port, rate, run_surge, Child([nginx.proc.pid]), "open", nginx.url, None,
                         "--rate", str(rate), "--seconds", "5", "--conns", "4", timeout=60)
    secs = result["server_per_second"]
    assert len(secs) >= 2, result
    assert all(abs(c - rate) <= rate * 0.03 for c in secs), secs
    assert result["server_worst_second_error_pct"] == max(abs(c - rate) / rate * 100 for c in secs)
