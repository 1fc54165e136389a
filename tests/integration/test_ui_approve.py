"""Approving a run over its quota from the UI, in a real Chromium, on a locked-down bus
(docs/quotas.md): the UI's own NATS user may not approve; given the approver's
credentials it approves on a second connection, and the run starts. A UI without them
shows no button and its route answers 403.
"""

from __future__ import annotations

import json

import pytest

from services.common.client import CoordinatorClient
from tests import plans
from tests.conftest import free_port, generators_registered, target_stats, until
from tests.integration.test_permissions import Secured
from tests.ui_helpers import browser_page, shot

pytestmark = pytest.mark.timeout(120)


async def test_a_run_over_its_quota_is_approved_in_the_browser_and_starts(make_cluster, tmp_path) -> None:
    from playwright.async_api import expect

    sec = Secured(make_cluster, tmp_path)
    cluster = sec.cluster
    _, target = cluster.target()
    quotas = {target.removeprefix("http://"): {"max_rate": 50}}
    cluster.coordinator(SURGE_QUOTAS=json.dumps(quotas), **sec.env("coordinator"))
    cluster.generator(**sec.env("generator"))
    approving, plain = free_port(), free_port()
    ui = cluster.service("ui", SURGE_UI_PORT=str(approving), SURGE_UI_APPROVER_USER="approver",
                         SURGE_UI_APPROVER_PASSWORD_FILE=str(sec.secrets / "approver.password"),
                         **sec.env("ui"))
    other = cluster.service("ui", name="ui-plain", SURGE_UI_PORT=str(plain), **sec.env("ui"))
    await ui.said("listening", 20)  # the UI listens once it has joined the bus
    await other.said("listening", 20)  # the UI listens once it has joined the bus
    api = CoordinatorClient(await sec.connect("cli"))
    await generators_registered(api, 1)

    started = await api.start(plans.plan(plans.SHORT, target, name="over", rate=100))
    assert started.queued and "waiting for approval" in started.queued

    # a UI without approver credentials: no button, and the route refuses
    async with browser_page() as page:
        await page.goto(f"http://127.0.0.1:{plain}/tests")
        row = page.locator(f"#queue-table tr[data-queued='{started.run_id}']")
        await expect(row).to_contain_text("waiting approval", timeout=10_000)
        await expect(row.locator("button")).to_have_count(0)
        refused = await page.evaluate(
            """(run) => S.api("POST", `/api/queue/${run}/approve`, {approve: true})
                 .then(() => null, (e) => ({status: e.status, code: e.error.code}))""", started.run_id)
        assert refused == {"status": 403, "code": "approval_not_configured"}
        assert (await page.evaluate("""() => S.api("GET", "/api/queue")"""))["can_approve"] is False
        assert page.errors == []  # type: ignore[attr-defined]

    # the approving UI: the waiting run shows with Approve; Approve starts it
    async with browser_page() as page:
        await page.goto(f"http://127.0.0.1:{approving}/tests")
        row = page.locator(f"#queue-table tr[data-queued='{started.run_id}']")
        await expect(row).to_contain_text("waiting approval", timeout=10_000)
        assert target_stats(target)["requests"] == 0
        await shot(page, "queue-approve")
        await row.locator("button.approve").click()

        async def sent_all():
            return target_stats(target)["requests"] >= 100 or None

        await until(sent_all, 30, "the approved run's requests at the target", every_s=0.2)
        assert page.errors == []  # type: ignore[attr-defined]
    [entry] = (await api.queue()).runs
    approved = next(d for d in entry.decisions if d.what.startswith("approved"))
    assert approved.who == "ui 127.0.0.1"
    assert target_stats(target)["requests"] == 100
    await api.close()
