"""Quotas and approvals on a locked-down bus (docs/quotas.md).

Per-role NATS users over TLS, as `surge up` runs them. A run over a refusing quota is
refused; a run over an approving quota waits until the approver user says yes (the
cli user may not); two runs on one target system run one after the other.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from schemas.errors import NoGenerators, QuotaExceeded
from services.common.client import CoordinatorClient
from tests import plans
from tests.conftest import generators_registered, run_in, target_stats, until
from tests.integration.test_permissions import Secured

pytestmark = pytest.mark.timeout(120)


async def test_over_quota_is_refused_or_waits_for_the_approver_and_one_target_runs_one_at_a_time(
    make_cluster, tmp_path,
):
    sec = Secured(make_cluster, tmp_path)
    cluster = sec.cluster
    _, guarded = cluster.target()
    _, strict = cluster.target()
    quotas = {
        guarded.removeprefix("http://"): {"max_rate": 50, "max_running": 1},
        strict.removeprefix("http://"): {"max_rate": 50, "over_limit": "refuse"},
    }
    cluster.coordinator(SURGE_QUOTAS=json.dumps(quotas), **sec.env("coordinator"))
    cluster.generator(**sec.env("generator"))
    api = CoordinatorClient(await sec.connect("cli"))
    await generators_registered(api, 1)

    def as_role(role: str) -> list[str]:
        return ["--user", role, "--password-file", str(sec.secrets / f"{role}.password"),
                "--ca", sec.tls.ca]

    # over a refusing quota: refused, nothing sent
    with pytest.raises(QuotaExceeded) as refused:
        await api.start(plans.plan(plans.SHORT, strict, name="q", rate=100))
    assert "above the limit of 50/s" in refused.value.message
    assert target_stats(strict)["requests"] == 0

    # over an approving quota: `surge run` waits; the cli user cannot approve, the approver can
    path = tmp_path / "over.yaml"
    path.write_text(json.dumps(plans.raw(plans.SHORT, guarded, name="over", rate=100)))
    waiting = asyncio.create_task(asyncio.to_thread(cluster.cli, "run", str(path), *as_role("cli")))

    async def waiting_entry():
        runs = (await api.queue()).runs
        return runs[0] if runs and runs[0].state == "waiting_approval" else None

    entry = await until(waiting_entry, 20, "the run waiting for approval")
    assert "rate 100/s above the limit of 50/s" in entry.reasons[0]
    assert target_stats(guarded)["requests"] == 0
    denied = await asyncio.to_thread(cluster.cli, "approve", entry.run_id, *as_role("cli"))
    assert denied.returncode == 2 and "permission" in denied.stderr.lower(), denied.stderr
    ok = await asyncio.to_thread(cluster.cli, "approve", entry.run_id, "--reason", "load test window",
                                 *as_role("approver"))
    assert ok.returncode == 0, ok.stderr
    ran = await asyncio.wait_for(waiting, 60)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "waiting for approval" in ran.stdout and "approved" in ran.stdout
    assert target_stats(guarded)["requests"] == 100
    [done] = (await api.queue()).runs
    assert [d.what for d in done.decisions][1:] == ["approved: load test window", "started"]
    assert done.state == "started"
    table = await asyncio.to_thread(cluster.cli, "queue", *as_role("cli"))
    assert table.returncode == 0 and table.stdout.startswith("1 queued run(s)"), table.stderr

    # two runs on one target system: the second waits for the first to end
    async def start_first():  # once the generator of the approved run is idle again
        try:
            return await api.start(plans.plan(plans.SHORT, guarded, name="a", rate=20))
        except NoGenerators:
            return None

    first = await until(start_first, 15, "an idle generator", every_s=0.2)
    second = await api.start(plans.plan(plans.SHORT, guarded, name="b", rate=20))
    assert first.queued is None and second.queued and second.queued.startswith("queued")

    a = await run_in(api.nc, first.run_id)
    b = await run_in(api.nc, second.run_id)  # the queued run, run and ended
    assert b.created_at >= a.ended_at  # one after the other, not side by side
    assert target_stats(guarded)["requests"] == 140
    await api.close()
