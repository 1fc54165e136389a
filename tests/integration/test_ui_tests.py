"""Test management in the UI, in a real Chromium against a real stack: save the editor's
plan as a test, find it on the Tests page with its version, schedule it 3 s ahead with
the fire times previewed, and find the fired run in the Archive and add a note to it.
"""

from __future__ import annotations

import msgspec
import pytest

from schemas import subjects
from schemas.control import ENDED_STATES, RunRecord
from tests.conftest import Cluster
from tests.events import kv_until
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
        await expect(page.locator("#rate-curve polyline")).to_have_attribute("points", "0.0,6.0 480.0,6.0")

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

        # a suite of the test at two rising rates with a pause: its curve shows the phases
        await api.suite_save("ramp", mode="stages", tests=["ui-smoke"], rates=[10.0, 20.0], pause_s=1.0)
        await page.reload()
        await page.click("#suites-table tr[data-suite='ramp'] a")
        # 1 s at 10/s, 1 s pause at 0, 1 s at 20/s: three seconds, up to 20/s
        await expect(page.locator("#curve .muted")).to_contain_text("up to 20", timeout=10_000)
        await expect(page.locator("#curve .muted")).to_contain_text("2 steps")
        points = await page.locator("#rate-curve polyline").get_attribute("points")
        assert points.split()[2:4] == ["160.0,90.0", "320.0,90.0"], points  # the pause at rate 0
        await page.select_option("#sched-kind", "cron")
        await page.fill("#sched-when", "0 2 * * *")
        await page.click("#sched-preview")
        await expect(page.locator("#next-fires li")).to_have_count(5, timeout=10_000)

        def fired_and_ended(latest: dict) -> RunRecord | None:
            runs = [msgspec.json.decode(v, type=RunRecord) for v in latest.values() if v]
            return next((r for r in runs if r.test == "ui-smoke" and r.state in ENDED_STATES), None)

        runs_kv = await api.nc.jetstream().key_value(subjects.RUNS_BUCKET)
        run = await kv_until(runs_kv, ">", fired_and_ended, 30, "the scheduled run to fire and end")

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


async def test_build_a_two_step_test_send_it_once_round_trip_yaml_and_save(cluster: Cluster) -> None:
    from playwright.async_api import expect

    base, target, api = await start_stack(cluster, generators=1)
    async with browser_page() as page:
        await page.goto(f"{base}/builder")
        await page.fill("#b-name", "login-flow")
        await page.fill("#b-target", target)
        await page.fill("#rate", "5")
        await page.fill("#duration", "1s")
        # step 1: log in, extract the token
        one = page.locator("[data-step='0-0']")
        await one.locator("select[aria-label=method]").select_option("POST")
        await one.locator("input[aria-label=path]").fill("/login")
        await one.locator("select[aria-label='body type']").select_option("json")
        await page.locator("[data-step='0-0'] textarea[aria-label=body]").fill(
            '{"username": "ana", "password": "secret"}')
        await page.click("[data-add='extract-0-0']")
        extract = page.locator("[data-rows='extract-0-0'] .row").first
        await extract.locator("input[data-col=variable]").fill("token")
        await extract.locator("input[data-col=expression]").fill("$.token")
        await page.locator("[data-step='0-0'] input[aria-label=status]").fill("200")
        # step 2: use it
        await page.click("#add-step-0")
        two = page.locator("[data-step='0-1']")
        await two.locator("input[aria-label=path]").fill("/api/me")
        await page.click("[data-add='headers-0-1']")
        header = page.locator("[data-rows='headers-0-1'] .row").first
        await header.locator("input[data-col=header]").fill("Authorization")
        await header.locator("input[data-col=value]").fill("Bearer {{token}}")
        await page.locator("[data-step='0-1'] input[aria-label=contains]").fill('"ok": true')

        # send once: both steps answered, the token extracted and used
        await page.click("#b-send")
        await expect(page.locator("#try")).to_have_attribute("data-ok", "true", timeout=20_000)
        await expect(page.locator("#try code[data-var=token]")).to_contain_text("token = ")
        await expect(page.locator("#try [data-try='1'] .try-check")).to_have_text("checks passed")
        await expect(page.locator("#try [data-try='1'] .try-body")).to_contain_text('"user"')
        await shot(page, "builder-send-once")

        # the YAML view shows the same plan; an edit there comes back into the form
        await page.click("#tab-yaml")
        yaml_text = await page.locator("#yaml").input_value()
        assert "Bearer {{token}}" in yaml_text and "jsonpath: $.token" in yaml_text, yaml_text
        await page.fill("#yaml", yaml_text.replace("rate: 5", "rate: 7"))
        await page.click("#tab-form")
        await expect(page.locator("#rate")).to_have_value("7", timeout=10_000)
        await expect(page.locator("[data-step='0-1'] input[aria-label=path]")).to_have_value("/api/me")

        await page.fill("#b-suite", "auth")
        await page.click("#b-save")
        await expect(page.locator("#b-saved")).to_contain_text("login-flow v1", timeout=10_000)
        assert page.errors == []  # type: ignore[attr-defined]
    saved = (await api.test_get("login-flow")).test
    assert saved.suite == "auth" and saved.plan.rate == 7
    [flow] = saved.plan.flows
    assert [s.path for s in flow.steps] == ["/login", "/api/me"]
    assert flow.steps[1].headers == {"Authorization": "Bearer {{token}}"}
    await api.close()
