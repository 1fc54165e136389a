"""The New run page's import, in a real Chromium against a real coordinator and UI:
the same conversion as `surge import`, the plan put in the editor and validated, and
what was not mapped shown beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cluster, free_port
from tests.ui_helpers import browser_page, shot

pytestmark = pytest.mark.timeout(90)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


async def test_new_run_page_imports_a_file_and_shows_what_was_not_mapped(cluster: Cluster, tmp_path) -> None:
    cluster.coordinator()
    port = free_port()
    ui = cluster.service("ui", SURGE_UI_PORT=str(port))
    await ui.said("listening", 20)  # the UI listens once it has joined the bus
    curl = tmp_path / "login.sh"
    curl.write_text("curl http://127.0.0.1:8080/login --data-urlencode 'user=ann b' --data-urlencode 'pw=a&b'\n")
    async with browser_page() as page:
        await page.goto(f"http://127.0.0.1:{port}/new")
        await page.wait_for_selector("#plan-ok")  # the example plan validated

        await page.select_option("#import-kind", "openapi")
        await page.set_input_files("#import-file", str(SAMPLES / "shop.openapi.yaml"))
        await page.wait_for_selector("#import-notes:not([hidden])")
        notes = await page.inner_text("#import-notes")
        assert "Not mapped" in notes and "credential {{apiKey}} (security scheme) is empty in vars" in notes
        # selectors, not wait_for_function: the page's CSP forbids the eval that would need
        await page.wait_for_selector("#plan-ok b:text-is('Shop API')")
        plan = await page.input_value("#plan")
        assert "operationId" not in plan and "name: listProducts" in plan
        await shot(page, "import-openapi")

        await page.select_option("#import-kind", "curl")
        await page.fill("#import-target", "http://127.0.0.1:9")  # another origin than the command's
        await page.set_input_files("#import-file", str(curl))
        await page.wait_for_selector("#import-notes:has-text('Everything in the source was mapped')")
        plan = await page.input_value("#plan")
        assert "body: user=ann+b&pw=a%26b" in plan and "target: http://127.0.0.1:9\n" in plan
        await page.wait_for_selector("#plan-ok")
        assert page.errors == []  # type: ignore[attr-defined]
