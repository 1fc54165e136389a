"""The UI's fleet controls in a real Chromium against a real stack: generator labels
and their filter, one generator's rate, stop and start from the live view (checked at
the target, per generator and second), and the log panel on the live and report pages.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from services.plan import loader
from tests.conftest import Cluster, free_port, generators_registered, target_stats
from tests.integration.test_distributed_run import LiveFeed
from tests.integration.test_fleet import a_whole_second_after, wall_second
from tests.integration.test_ui import wait_ended
from tests.plans import CHECKED, raw
from tests.ui_helpers import browser_page, shot

pytestmark = pytest.mark.timeout(120)


async def test_live_view_controls_one_generator_and_shows_its_logs(cluster: Cluster) -> None:
    from playwright.async_api import expect

    from services.common.client import CoordinatorClient

    _, target = cluster.target()
    cluster.coordinator()
    cluster.generator(generator_id="gen-a", SURGE_GENERATOR_LABELS="room=a")
    cluster.generator(generator_id="gen-b", SURGE_GENERATOR_LABELS="room=b,zone=eu-1")
    port = free_port()
    ui = cluster.service("ui", SURGE_UI_PORT=str(port))
    await ui.said("listening", 20)  # the UI listens once it has joined the bus
    base = f"http://127.0.0.1:{port}"
    api = await CoordinatorClient.connect(cluster.url)
    await generators_registered(api, 2)
    async with browser_page() as page:
        # --- labels, and the filter by them ---------------------------------------------
        await page.goto(base + "/generators")
        await expect(page.locator("#gen-table tr[data-gen]")).to_have_count(2, timeout=10_000)
        await expect(page.locator('#gen-table tr[data-gen="gen-b"] .labels')).to_have_text("room=b,zone=eu-1")
        await page.fill("#label-filter", "zone=eu-1")
        await expect(page.locator("#gen-table tr[data-gen]")).to_have_count(1)
        await expect(page.locator("#gen-table tr[data-gen]")).to_have_attribute("data-gen", "gen-b")

        # --- one generator's rate, stop and start from the live view --------------------
        plan = raw(CHECKED, target, rate=60, duration="20s", requests=[{"name": "home", "path": "/"}])
        started = await api.start(loader.from_obj(plan))
        run = started.run_id
        feed = LiveFeed()
        await feed.attach(api.nc, run)
        await page.goto(f"{base}/runs/{run}")
        rows = page.locator("#gen-ctl-table tr[data-gen]")
        await expect(rows).to_have_count(2, timeout=10_000)
        row_a, row_b = rows.nth(0), rows.nth(1)
        await row_a.locator(".gen-rate").fill("90")
        await row_a.locator(".gen-rate-btn").click()
        await expect(page.locator("#gen-msg")).to_contain_text("gen-a → 90", timeout=5_000)
        snap, sec = await a_whole_second_after(feed, time.time())
        assert snap.target_rps == pytest.approx(120)
        assert wall_second(target, "gen-a", sec) == pytest.approx(90, rel=0.1, abs=3)

        await row_b.locator(".gen-stop").click()
        await expect(row_b.locator(".badge")).to_have_text("stopped", timeout=5_000)
        snap, sec = await a_whole_second_after(feed, time.time())
        assert wall_second(target, "gen-b", sec) == 0 and snap.target_rps == pytest.approx(90)
        await expect(page.locator("#events")).to_contain_text("generator gen-b stopped by ui", timeout=5_000)

        await page.locator('#gen-ctl-table tr[data-gen="gen-b"] .gen-start').click()
        await expect(page.locator('#gen-ctl-table tr[data-gen="gen-b"] .badge')).to_have_text("sending", timeout=5_000)
        snap, sec = await a_whole_second_after(feed, time.time())
        assert wall_second(target, "gen-b", sec) == pytest.approx(30, rel=0.1, abs=3)

        # --- the log panel: every generator, then one, and its download -----------------
        lines = page.locator("#log-lines .log-line")
        await expect(page.locator('#log-lines .log-line[data-gen="gen-a"]').first).to_be_visible(timeout=10_000)
        await page.select_option("#log-gen", "gen-b")
        await expect(page.locator('#log-lines .log-line[data-gen="gen-b"]').first).to_be_visible(timeout=10_000)
        assert await page.locator('#log-lines .log-line[data-gen="gen-a"]').count() == 0
        await shot(page, "live-fleet")
        href = await page.locator("#log-download").get_attribute("href")
        assert href == f"/api/runs/{run}/logs.txt?generator=gen-b"
        with urllib.request.urlopen(base + href, timeout=10) as resp:
            text = resp.read().decode()
        assert " gen-b " in text and " gen-a " not in text and "run assigned" in text

        await api.stop(run)
        await wait_ended(api, run)
        seen = target_stats(target)["by_generator"]  # this run's, before the closed one below
        await page.goto(f"{base}/runs/{run}/report")
        await expect(page.locator("#log-panel")).to_be_visible(timeout=10_000)
        await expect(lines.first).to_be_visible(timeout=10_000)
        assert await page.locator("#log-gen option").count() == 3  # all, gen-a, gen-b

        # --- a closed plan: its users stand where the target rate does, and the page offers
        # no rate control (the coordinator refuses a closed plan's rate and per-generator
        # control), only Stop; its log panel still lists the generators -------------------
        closed = raw(CHECKED, target, rate=None, users=3, duration="20s", requests=[{"name": "home", "path": "/"}])
        users_run = (await api.start(loader.from_obj(closed))).run_id
        await page.goto(f"{base}/runs/{users_run}")
        await expect(page.locator("#kpi-target .l")).to_have_text("Users", timeout=10_000)
        await expect(page.locator("#kpi-target .v")).to_have_text("3", timeout=10_000)
        await expect(page.locator("#stop-btn")).to_be_visible()
        assert await page.locator("#rate-btn").count() == 0 and await page.locator("#gen-ctl-panel").count() == 0
        await expect(page.locator("#log-gen option")).to_have_count(3, timeout=10_000)
        await shot(page, "live-closed")
        await page.click("#stop-btn")
        await expect(page.locator("#report-link")).to_be_visible(timeout=20_000)
        assert not page.errors, page.errors
    report = await api.report(run)
    assert any("generator gen-a rate set to 90/s by ui" in e for e in report.events), report.events
    assert seen == {g: t.requests for g, t in report.generators.items()}
    await api.close()
