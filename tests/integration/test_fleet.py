"""The fleet: pools of labelled generators, per-generator control, per-generator logs.

Real nats-server, coordinator, generators and target. The target counts what each
generator sent from its X-Surge-Generator header, per wall second, so every claim
is checked where the load lands.
"""

from __future__ import annotations

import json

import pytest

from schemas.errors import NoGenerators
from services.common.client import CoordinatorClient
from services.plan import loader
from tests.conftest import Cluster, api_with, target_stats
from tests.integration.test_distributed_run import finished_report, plan_for, start_and_follow

pytestmark = pytest.mark.timeout(90)


async def pool_stack(cluster: Cluster) -> tuple[str, CoordinatorClient]:
    """A target, a coordinator, gen-a (room=a) and gen-b (room=b, zone=eu-1)."""
    _, target = cluster.target()
    cluster.coordinator()
    cluster.generator(generator_id="gen-a", SURGE_GENERATOR_LABELS="room=a")
    cluster.generator(generator_id="gen-b", SURGE_GENERATOR_LABELS="zone=eu-1, room=b")
    return target, await api_with(cluster, 2)


async def test_plan_selecting_a_label_sends_load_only_from_that_pool(cluster: Cluster):
    target, api = await pool_stack(cluster)
    beats = {b.id: b.labels for b in (await api.generators()).generators}
    assert beats == {"gen-a": {"room": "a"}, "gen-b": {"zone": "eu-1", "room": "b"}}

    plan = plan_for(target, rate=100, duration="2s", generators={"labels": {"room": "b"}})
    started, feed = await start_and_follow(api, plan)
    assert started.generators == {"gen-b": 1.0}
    report = await finished_report(api, feed, started.run_id)
    seen = target_stats(target)["by_generator"]
    assert seen == {"gen-b": report.totals.requests} and report.totals.requests >= 190
    assert set(report.generators) == {"gen-b"}

    listed = cluster.cli("generators", "--label", "room=a", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [g["id"] for g in json.loads(listed.stdout)] == ["gen-a"]
    await api.close()


async def test_a_pool_that_cannot_be_had_is_refused_naming_selector_and_what_is_there(cluster: Cluster):
    target, api = await pool_stack(cluster)
    plan = plan_for(target, generators={"count": 2, "labels": {"room": "a"}})
    with pytest.raises(NoGenerators) as err:
        await api.start(loader.from_obj(plan))
    msg = err.value.message
    assert "2 generators labelled room=a" in msg and "1 × room=a" in msg and "room=b,zone=eu-1" in msg, msg
    assert err.value.field == "generators"
    assert target_stats(target)["requests"] == 0
    await api.close()
