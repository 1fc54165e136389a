"""The web UI in a real Chromium against a real stack (nats-server, coordinator,
generators, target, UI): start a run from the page, watch it, steer it, stop it, read
its report, compare two runs; and with a token, nothing is served without it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request

import aiohttp
import msgspec
import nats
import pytest

from schemas import subjects
from schemas.host import Alert, HostSample, NetIO, ProcessSample
from services.common.client import CoordinatorClient
from tests.conftest import Cluster, api_with, free_port, generators_registered, run_in
from tests.ui_helpers import browser_page, shot

pytestmark = pytest.mark.timeout(120)

PLAN = """name: ui-checkout
target: {target}
rate: {rate}
duration: {duration}
connections: 8
timeout: 2s
requests:
  - name: home
    path: /
    weight: 3
    checks: {{status: 200}}
  - name: order
    method: POST
    path: /api/orders
    json: {{sku: A1}}
thresholds:
  p99_ms: 500
  error_rate: 0.05
  requests:
    order: {{p99_ms: 500}}
"""


async def start_stack(cluster: Cluster, generators: int, **ui_env: str) -> tuple[str, str, CoordinatorClient]:
    _, target = cluster.target()
    cluster.coordinator()
    for _ in range(generators):
        cluster.generator()
    port = free_port()
    ui = cluster.service("ui", SURGE_UI_PORT=str(port), **ui_env)
    await ui.said("listening", 20)  # the UI listens once it has joined the bus
    api = await CoordinatorClient.connect(cluster.url)

    await generators_registered(api, generators)
    return f"http://127.0.0.1:{port}", target, api


async def wait_ended(api: CoordinatorClient, run_id: str, limit_s: float = 30) -> None:
    await run_in(api.nc, run_id, limit_s=limit_s)


async def publish_host(nc, name: str, ago_s: float = 0.0, cpu: float = 37.5) -> None:
    sample = HostSample(
        host=name, ts=time.time() - ago_s, interval_s=1.0, cores=2, cpu_pct=cpu, cpu_per_core=[cpu - 8, cpu + 8],
        iowait_pct=0.4, load1=0.8, load5=0.6, load15=0.5, mem_total_bytes=8 << 30,
        mem_used_bytes=3 << 30, mem_pct=37.5, swap_pct=0.0,
        net={"lo": NetIO(rx_bps=2.5e6, tx_bps=2.5e6, rx_pps=900, tx_pps=900, errors_in=0,
                         errors_out=0, drops_in=0, drops_out=0)},
        tcp={"ESTABLISHED": 18, "TIME_WAIT": 4, "LISTEN": 6}, open_fds=120,
        processes=[ProcessSample(pid=4242, name="generator", cpu_pct=cpu * 1.5, rss_bytes=90 << 20),
                   ProcessSample(pid=4243, name="coordinator", cpu_pct=6.0, rss_bytes=70 << 20)],
    )
    await nc.publish(subjects.host(subjects.token(name)), msgspec.json.encode(sample))


async def publish_alert(nc, host: str, state: str, value: float = 97.0) -> None:
    alert = Alert(host=host, ts=time.time(), name="cpu_high", metric="cpu_pct", value=value, threshold=90.0,
                  state=state, message=f"CPU {value:.0f}% above 90% for 10s" if state == "firing" else "CPU back under 90%")
    await nc.publish(subjects.alerts(subjects.token(host)), msgspec.json.encode(alert))


async def number(locator) -> float:
    text = (await locator.inner_text()).replace(",", "").split()[0]
    return float(text) if text not in ("–", "") else -1.0


async def test_run_from_the_page_live_rate_stop_report_and_compare(cluster: Cluster) -> None:
    from playwright.async_api import expect

    base, target, api = await start_stack(cluster, generators=2)
    nc = await nats.connect(cluster.url)
    try:
        async with browser_page() as page:
            # --- a plan with an error: shown next to its field --------------------
            await page.goto(f"{base}/new")
            bad = PLAN.format(target=target, rate=100, duration="20s").replace("method: POST", "method: FETCH")
            await page.fill("#plan", bad)
            error = page.locator("#plan-error")
            await expect(error).to_have_attribute("data-field", "requests.1.method", timeout=10_000)
            await expect(page.locator(".gutter div.err")).to_have_text("13")  # the line of `method: FETCH`
            await expect(page.locator("#marker")).to_be_visible()
            await expect(page.locator("#start")).to_be_disabled()
            await shot(page, "new-run-error")

            # --- a good plan: validated, then started from the page ---------------
            await page.fill("#plan", PLAN.format(target=target, rate=100, duration="20s"))
            await expect(page.locator("#plan-ok")).to_be_visible(timeout=10_000)
            await expect(page.locator("#start")).to_be_enabled()
            await shot(page, "new-run")
            await page.click("#start")
            await page.wait_for_url("**/runs/*", timeout=10_000)
            run1 = page.url.rstrip("/").split("/")[-1]

            # --- live numbers move --------------------------------------------------
            total = page.locator("#kpi-total .v")
            await expect(total).not_to_have_text("–", timeout=15_000)
            first = await number(total)
            await expect(total).not_to_have_text(await total.inner_text(), timeout=5_000)
            assert await number(total) > first
            await expect(page.locator("#kpi-target .v")).to_have_text("100", timeout=5_000)
            await expect(page.locator("#chart-rate .u-over")).to_be_visible()
            await expect(page.locator("#gen-table tr[data-gen]")).to_have_count(2)

            # --- change the rate: the target number (and line) follow --------------
            await page.fill("#rate-input", "160")
            await page.click("#rate-btn")
            await expect(page.locator("#ctl-msg")).to_contain_text("160", timeout=5_000)
            await expect(page.locator("#kpi-target .v")).to_have_text("160", timeout=8_000)
            await shot(page, "live")

            # --- stop: the page offers the report ------------------------------------
            await page.click("#stop-btn")
            await expect(page.locator("#report-link")).to_be_visible(timeout=20_000)
            await page.click("#report-link")
            await page.wait_for_url(f"**/runs/{run1}/report")
            await expect(page.locator("#verdict .badge")).to_have_text("pass", timeout=10_000)
            await expect(page.locator("#thresholds tbody tr")).to_have_count(3)
            await expect(page.locator("#thresholds tbody tr").nth(2).locator("td").first).to_have_text("order: p99_ms")
            await expect(page.locator("#chart-dist .u-over")).to_be_visible()
            assert (await page.locator("#requests tbody tr").count()) == 2
            await shot(page, "report")
            # the same report as one page to keep: what the "HTML" button downloads
            link = await page.locator("#report-html").get_attribute("href")
            got = await page.request.get(base + link)
            assert got.status == 200 and got.headers["content-type"].startswith("text/html")
            assert got.headers["content-disposition"] == f'attachment; filename="{run1}.html"'
            page_html = await got.text()
            # throughput, latency, and the generators' own CPU (no monitor here: no host chart)
            assert run1 in page_html and "PASS" in page_html and page_html.count("<svg") == 3
            await expect(page.locator("#generator-cpu tbody tr")).to_have_count(2)
            await expect(page.locator("#hosts-table tbody tr td.muted").last).to_have_text(
                "no monitor on this host")
            await expect(page.locator("#chart-gen-cpu .u-over")).to_be_visible()

            # --- a second run of the same plan, then compare ------------------------
            started = await api.call(subjects.RUN_START, json.dumps({
                "name": "ui-checkout", "target": target, "rate": 150, "duration": 3, "connections": 8,
                "requests": [{"name": "home", "path": "/", "weight": 3},
                             {"name": "order", "method": "POST", "path": "/api/orders", "json": {"sku": "A1"}}],
                "thresholds": {"p99_ms": 500, "error_rate": 0.05, "requests": {"order": {"p99_ms": 500}}},
            }).encode(), dict)
            run2 = started["run_id"]
            await wait_ended(api, run2)
            for i in range(20):  # a short history for the host's chart
                await publish_host(nc, "load-box-1", ago_s=20 - i, cpu=30 + (i * 7) % 40)
            await page.goto(base + "/")
            await expect(page.locator(f'tr[data-run="{run2}"]')).to_be_visible(timeout=10_000)
            await page.check(f'input[data-run="{run1}"]')
            await page.check(f'input[data-run="{run2}"]')
            await shot(page, "runs")
            await page.click("#compare-btn")
            await page.wait_for_url("**/compare?runs=*")
            await expect(page.locator("#compare-table")).to_be_visible(timeout=10_000)
            await expect(page.locator("#compare-table th")).to_have_count(3)
            assert await page.locator("#compare-table td.diff").count() >= 1  # target rate differs
            await expect(page.locator("#plan-warning")).to_have_count(0)
            await expect(page.locator("#compare-thresholds td.mono", has_text="order: p99_ms")).to_have_count(1)
            await expect(page.locator("#compare-hosts tr", has_text="the limit")).to_contain_text("target")
            await shot(page, "compare")

            # --- generators and hosts, with a monitor alert firing then resolved ------
            await page.goto(base + "/generators")
            await expect(page.locator("#gen-table tr[data-gen]")).to_have_count(2, timeout=10_000)
            await expect(page.locator("#conn")).to_have_text("live")
            await publish_alert(nc, "load-box-1", "firing")
            badge = page.locator("#alerts-badge")
            await expect(badge).to_have_text("⚠ 1 alert", timeout=5_000)  # on every page
            await expect(page.locator("#alert-banner")).to_contain_text("cpu_high")
            await shot(page, "generators")
            await page.goto(base + "/hosts")
            await expect(page.locator('[data-host="load-box-1"]')).to_be_visible(timeout=10_000)
            firing = page.locator('#firing-table tr[data-alert="load-box-1/cpu_high"]')
            await expect(firing).to_contain_text("CPU 97% above 90%")  # from the backlog
            await expect(page.locator('[data-host="load-box-1"] .badge.firing')).to_have_text("cpu_high")
            await expect(badge).to_be_visible()
            await shot(page, "hosts")
            await publish_alert(nc, "load-box-1", "resolved", value=42.0)
            await expect(badge).to_be_hidden(timeout=5_000)
            await expect(firing).to_have_count(0)
            await expect(page.locator('#recent-alerts tr[data-state="resolved"]')).to_have_count(1)
            await expect(page.locator('[data-host="load-box-1"] .badge.firing')).to_have_count(0)

            # a card below the fold is refilled when it scrolls into view, with the newest sample
            for i in range(12):
                await publish_host(nc, f"zz-host-{i:02d}", cpu=12.0)
            last = page.locator('[data-host="zz-host-11"]')
            await expect(last.locator(".minikpis b").first).to_have_text("12%", timeout=10_000)
            await publish_host(nc, "zz-host-11", cpu=77.0)
            await publish_host(nc, "load-box-1", cpu=55.0)  # on screen: refilled at once
            await expect(page.locator('[data-host="load-box-1"] .minikpis b').first).to_have_text("55%")
            await last.scroll_into_view_if_needed()
            # within 2 s: before the page's 3-s staleness sweep would refill it anyway
            await expect(last.locator(".minikpis b").first).to_have_text("77%", timeout=2_000)
            assert page.errors == [], page.errors
    finally:
        await nc.close()
        await api.close()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


async def test_with_a_token_nothing_is_served_without_it(cluster: Cluster) -> None:
    from playwright.async_api import expect

    token = "s3cret-token"
    cluster.coordinator()
    await (await api_with(cluster, 0)).close()  # the coordinator leads and answers
    port = free_port()
    ui = cluster.service("ui", SURGE_UI_PORT=str(port), SURGE_UI_TOKEN=token)
    await ui.said("listening", 20)  # the UI listens once it has joined the bus
    base = f"http://127.0.0.1:{port}"

    # the probe answers without the token, and says nothing more than that
    status, body, _ = await asyncio.to_thread(_get, base + "/healthz")
    assert status == 200 and json.loads(body) == {"ok": True, "nats": True}

    # pages, API, static files and the WebSocket: refused without the token
    for path in ("/", "/new", "/runs/abc", "/generators", "/hosts", "/compare?runs=a,b"):
        status, _, headers = await asyncio.to_thread(_get, base + path)
        assert status == 302 and headers["Location"] == "/login", path
    for path in ("/api/runs", "/api/session", "/api/generators", "/api/runs/abc/report",
                 "/api/runs/abc/report.html"):
        status, body, _ = await asyncio.to_thread(_get, base + path)
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized", path
    status, _, _ = await asyncio.to_thread(_get, base + "/static/js/common.js")
    assert status in (302, 401)
    status, _, _ = await asyncio.to_thread(_get, base + "/api/runs", {"Authorization": "Bearer wrong"})
    assert status == 401
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(base + "/ws")
        assert refused.value.status == 401

        # with the bearer token: API and WebSocket work; control needs no CSRF cookie
        auth = {"Authorization": f"Bearer {token}"}
        async with http.get(base + "/api/runs", headers=auth) as resp:
            assert resp.status == 200 and "runs" in await resp.json()
        async with http.ws_connect(base + "/ws", headers=auth) as ws:
            await ws.send_json({"sub": ["generators", "nonsense-topic"]})
            kinds = {(await ws.receive_json(timeout=5))["t"] for _ in range(2)}
            assert kinds == {"generators", "error"}
        async with http.post(base + "/api/runs/abc/rate", headers=auth, data=b'{"rate": "fast"}') as resp:
            body = await resp.json()
            assert resp.status == 400 and body["error"]["field"] == "rate"

    # the browser: login form, HttpOnly SameSite=Strict cookie, then everything works
    async with browser_page() as page:
        await page.goto(base + "/generators")
        await expect(page.locator("#token")).to_be_visible()
        await page.fill("#token", "wrong")
        await page.click("button[type=submit]")
        await expect(page.locator("#login-error")).to_be_visible()
        await shot(page, "login")
        await page.fill("#token", token)
        await page.click("button[type=submit]")
        await expect(page.locator("#conn")).to_have_text("live", timeout=10_000)
        await expect(page.locator("h1")).to_have_text("Runs")
        cookies = {c["name"]: c for c in await page.context.cookies()}
        session = cookies["surge_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict" and token not in session["value"]
        # a POST with the cookie but without the CSRF header is refused
        status = await page.evaluate(
            "fetch('/api/runs/abc/stop', {method: 'POST'}).then(r => r.status)")
        assert status == 403
        status = await page.evaluate(
            "fetch('/api/runs/abc/stop', {method: 'POST', headers: {'X-CSRF-Token': 'nope'}}).then(r => r.status)")
        assert status == 403
        # with it, the request reaches the coordinator (which knows no such run)
        status = await page.evaluate("""fetch('/api/runs/abc/stop', {method: 'POST', headers:
            {'X-CSRF-Token': document.cookie.match(/surge_csrf=([^;]+)/)[1]}}).then(r => r.status)""")
        assert status == 404
        assert page.errors == [], page.errors


async def test_a_killed_generator_shows_lost_with_a_gap_and_the_light_theme_reads(cluster: Cluster) -> None:
    from playwright.async_api import expect

    _, target = cluster.target()
    cluster.coordinator()
    gens = [cluster.generator(), cluster.generator()]
    port = free_port()
    ui = cluster.service("ui", SURGE_UI_PORT=str(port))
    await ui.said("listening", 20)  # the UI listens once it has joined the bus
    base = f"http://127.0.0.1:{port}"
    api = await CoordinatorClient.connect(cluster.url)
    try:
        await generators_registered(api, 2)
        started = await api.call(subjects.RUN_START, json.dumps({
            "name": "ui-lost", "target": target, "rate": 20, "duration": 10, "connections": 4,
            "requests": [{"name": "home", "path": "/"}], "thresholds": {"error_rate": 0.5},
        }).encode(), dict)
        run_id = started["run_id"]
        async with browser_page() as page:
            await page.goto(f"{base}/runs/{run_id}")
            rows = page.locator("#gen-table tr[data-gen]")
            await expect(rows).to_have_count(2, timeout=15_000)
            await expect(page.locator('#gen-table tr[data-gen="gen-2"] .badge')).to_have_text("ok", timeout=10_000)
            gens[1].kill()  # SIGKILL: no goodbye, the heartbeat just stops

            lost_row = page.locator('#gen-table tr[data-gen="gen-2"]')
            await expect(lost_row.locator(".badge")).to_have_text("lost", timeout=10_000)
            await expect(page.locator("#events")).to_contain_text("generator gen-2 lost")
            await expect(page.locator("#kpi-gens .v")).to_contain_text("1 lost")
            # the per-generator chart: gen-2's line stops (a gap) and is labelled lost
            await expect(page.locator("#chart-gen .u-legend")).to_contain_text("gen-2 (lost)")
            legend = page.locator("#chart-gen .u-legend tr")
            await expect(legend.filter(has_text="gen-2 (lost)").locator("td")).to_have_text("")  # no value since
            await expect(legend.filter(has_text="gen-1").locator("td")).to_have_text(re.compile(r"\d"))

            # the same page in the light theme, then (once the run ends) its report
            await page.click("#theme")
            await expect(page.locator("html")).to_have_attribute("data-theme", "light")
            await expect(page.locator('#gen-table tr[data-gen="gen-2"] .badge')).to_have_text("lost", timeout=10_000)
            await expect(page.locator("#chart-gen .u-over")).to_be_visible()
            await shot(page, "live-light")
            await wait_ended(api, run_id, limit_s=30)
            await page.goto(f"{base}/runs/{run_id}/report")
            await expect(page.locator("#verdict .badge")).to_have_text("pass", timeout=10_000)
            await expect(page.locator("#chart-dist .u-over")).to_be_visible()
            await shot(page, "report-light")
            assert page.errors == [], page.errors
    finally:
        await api.close()


async def test_the_coordinators_clock_stamp_is_not_a_generator_on_the_page(cluster: Cluster) -> None:
    """The coordinator stamps the bus's time with a delete of ``BUS_CLOCK_KEY`` in the
    registry (docs/design.md, "Membership"); the UI's generators topic must not turn it
    into a generator that left."""
    from schemas.control import Heartbeat

    port = free_port()
    ui = cluster.service("ui", SURGE_UI_PORT=str(port))
    await ui.said("listening", 20)
    nc = await nats.connect(cluster.url)
    registry = await nc.jetstream().key_value(subjects.GENERATORS_BUCKET)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
        await ws.send_json({"sub": ["generators"]})
        assert (await ws.receive_json(timeout=5))["t"] == "generators"  # the backlog
        await registry.delete(subjects.BUS_CLOCK_KEY)
        now = time.time()
        beat = Heartbeat(id="gen-q", host="test", pid=1, cores=1, version="test", started_at=now,
                         sent_at=now, capacity_rps=1000.0)
        await registry.put("gen-q", msgspec.json.encode(beat))  # after the stamp, in the stream's order
        got = await ws.receive_json(timeout=5)
        assert (got["t"], got["k"]) == ("generator", "gen-q"), got
    await nc.close()
