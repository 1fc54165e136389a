"""Test management in the UI, in a real Chromium against a real stack: save the editor's
plan as a test, find it on the Tests page with its version, schedule it 3 s ahead with
the fire times previewed, and find the fired run in the Archive and add a note to it.
"""

from __future__ import annotations

import pytest

from schemas.control import ENDED_STATES
from tests.conftest import Cluster, until
from tests.integration.test_ui import start_stack
from tests.ui_helpers import browser_page, shot

pytestmark = pytest.mark.timeout(120)

PLAN = """name: ui-smoke
target: {target}
rate: 20
duration: 1s
requests:
  - name: home
    path: /
"""


async def test_save_schedule_and_annotate_a_test_from_the_pages(cluster: Cluster) -> None:
    from playwright.async_api import expect

    base, target, api = await start_stack(cluster, generators=1)
    async with browser_page() as page:
        # --- New run: the editor's text becomes version 1 of a test -------------------
        await page.goto(f"{base}/new")
        await page.fill("#plan", PLAN.format(target=target))
        await page.fill("#suite", "shop")
        await page.click("#save-test")
        await expect(page.locator("#saved")).to_contain_text("ui-smoke v1", timeout=10_000)
        [saved] = (await api.test_list()).tests
        assert (saved.name, saved.suite, saved.author) == ("ui-smoke", "shop", "ui")

        # --- Tests: search finds it; its versions; edit opens the editor with its text
        await page.goto(f"{base}/tests")
        await page.fill("#search", "smoke")
        await expect(page.locator("#tests-table tr[data-test='ui-smoke']")).to_be_visible(timeout=10_000)
        await page.click("#tests-table tr[data-test='ui-smoke'] a")
        await expect(page.locator("#versions li")).to_have_count(1, timeout=10_000)

        # --- schedule it 3 s ahead: the preview shows its one fire time, then save ----
        await page.select_option("#sched-kind", "at")
        await page.fill("#sched-when", "+3s")
        await page.fill("#sched-tz", "UTC")
        await page.click("#sched-preview")
        await expect(page.locator("#next-fires li")).to_have_count(1, timeout=10_000)
        assert (await api.schedule_list()).schedules == []  # a preview saves nothing
        await page.click("#sched-save")
        await expect(page.locator("#schedules-table tr[data-schedule='ui-smoke']")).to_be_visible(timeout=10_000)
        await shot(page, "tests-schedule")

        async def fired_and_ended():
            runs = [r for r in (await api.list()).runs if r.test == "ui-smoke"]
            return runs[0] if runs and runs[0].state in ENDED_STATES else None

        run = await until(fired_and_ended, 30, "the scheduled run to fire and end", every_s=0.2)

        # --- Archive: the run is found by its test; a note and a conclusion are added --
        await page.goto(f"{base}/archive?test=ui-smoke")
        row = page.locator(f"#archive-table tr[data-run='{run.run_id}']")
        await expect(row).to_be_visible(timeout=10_000)
        await row.locator("a").first.click()
        await page.fill("#note", "p99 **fine**; fired by the schedule")
        await page.select_option("#conclusion-verdict", "pass")
        await page.click("#add-note")
        await expect(page.locator("#notes .note-text")).to_have_text("p99 **fine**; fired by the schedule",
                                                                      timeout=10_000)
        await expect(page.locator("#conclusion")).to_contain_text("pass")
        await shot(page, "archive-note")
        assert page.errors == []  # type: ignore[attr-defined]
    notes = (await api.export_run(run.run_id)).annotations
    assert notes.notes[0].author == "ui" and notes.conclusion.verdict == "pass"
    await api.close()
