"""Schedules and phased suites against a real stack (docs/schedules.md).

Real nats-server, coordinators, a generator and a target; `surge schedule`/`surge suite`
as the real CLI. The leader is SIGKILLed the moment it claims a fire: the fire still
starts exactly one run.
"""

from __future__ import annotations

import asyncio
import json
import time

import msgspec
import pytest
from nats.js.errors import NoKeysError

from schemas import subjects
from schemas.control import ENDED_STATES
from schemas.schedules import Fire
from services.common import bus
from tests.conftest import Cluster, api_with, generators_registered, target_stats, until
from tests.integration.test_failover import _other_holder, leader_and_standby, lease_holder
from tests.plans import SHORT_CHECKED, raw

pytestmark = pytest.mark.timeout(90)


async def cli(cluster: Cluster, *args: str):
    return await asyncio.to_thread(cluster.cli, *args)


async def fires(js) -> list[Fire]:
    kv = await js.key_value(subjects.FIRES_BUCKET)
    try:
        keys = await bus.kv_keys(kv)
    except NoKeysError:
        return []
    return [msgspec.json.decode((await kv.get(k)).value, type=Fire) for k in keys]


async def ended(api, run_id: str) -> bool:
    try:
        return (await api.get(run_id)).state in ENDED_STATES
    except Exception:  # not there yet, or no leader for a moment
        return False


async def test_a_schedule_3s_ahead_fires_once_even_when_the_leader_dies_at_fire_time(cluster: Cluster):
    _, target = cluster.target()
    coords, api, js = await leader_and_standby(cluster)
    cluster.generator()
    await generators_registered(api, 1)
    await api.test_save(raw(SHORT_CHECKED, target, name="nightly-smoke"))

    # kill the leader the moment it claims the fire
    kv = await js.key_value(subjects.FIRES_BUCKET)
    watcher = await kv.watchall()
    added = await cli(cluster, "schedule", "add", "nightly-smoke", "--at", "+3s", "--json")
    assert added.returncode == 0, added.stderr
    info = json.loads(added.stdout)
    assert len(info["next_fires"]) == 1
    leader = await lease_holder(js)
    while True:
        entry = await watcher.updates(timeout=10)
        if entry is not None and entry.value:
            break
    coords[leader].kill()
    await watcher.stop()
    claimed = msgspec.json.decode(entry.value, type=Fire)
    assert claimed.state == "claimed" and claimed.by == leader
    assert abs(claimed.fire_at - info["next_fires"][0]) < 0.01

    await until(lambda: _other_holder(js, leader), 10, "a new leader")

    async def started() -> Fire | None:
        [fire] = await fires(js)
        return fire if fire.state == "started" else None

    fire = await until(started, 20, "the fire marked started")
    assert fire.run_id == claimed.run_id
    await until(lambda: ended(api, fire.run_id), 30, "the fired run to end")
    runs = [r for r in (await api.list()).runs if r.test == "nightly-smoke"]
    assert [r.run_id for r in runs] == [fire.run_id]  # exactly one run
    assert runs[0].state == "finished" and runs[0].verdict == "pass"
    assert target_stats(target)["requests"] == 20
    assert len(await fires(js)) == 1

    listed = await cli(cluster, "schedule", "ls", "--json")
    [row] = json.loads(listed.stdout)
    assert row["last"]["state"] == "started" and row["next_fires"] == []
    table = await cli(cluster, "schedule", "ls")
    assert table.returncode == 0 and table.stdout.startswith("1 schedule(s)"), table.stderr
    assert (await cli(cluster, "schedule", "rm", "nightly-smoke")).returncode == 0
    assert (await api.schedule_list()).schedules == []
    await api.close()


async def test_schedule_input_errors_and_the_preview(cluster: Cluster):
    cluster.coordinator()
    api = await api_with(cluster, 0)
    await api.test_save(raw(SHORT_CHECKED, "http://127.0.0.1:9", name="t"))
    bad = await cli(cluster, "schedule", "add", "t", "--cron", "61 * * * *")
    assert bad.returncode == 2 and "cron" in bad.stderr
    zone = await cli(cluster, "schedule", "add", "t", "--at", "+1h", "--tz", "Mars/Base")
    assert zone.returncode == 2 and "tz" in zone.stderr
    nothing = await cli(cluster, "schedule", "add", "no-such-test", "--at", "+1h")
    assert nothing.returncode == 2 and "not_found" in nothing.stderr
    preview = await cli(cluster, "schedule", "add", "t", "--cron", "0 2 * * *", "--tz",
                        "Europe/Berlin", "--dry-run", "--json")
    assert preview.returncode == 0, preview.stderr
    assert len(json.loads(preview.stdout)["next_fires"]) == 5
    assert (await api.schedule_list()).schedules == []  # a dry run saves nothing
    await api.close()


async def test_a_suite_runs_in_order_and_stops_at_the_first_failed_verdict(cluster: Cluster):
    _, target = cluster.target()
    cluster.coordinator()
    cluster.generator()
    api = await api_with(cluster, 1)
    await api.test_save(raw(SHORT_CHECKED, target, name="first"))
    await api.test_save(raw(SHORT_CHECKED, target, name="second", thresholds={"p99_ms": 0.001}))  # fails
    await api.test_save(raw(SHORT_CHECKED, target, name="third"))
    saved = await cli(cluster, "suite", "save", "shop", "--test", "first", "--test", "second",
                      "--test", "third", "--pause", "0.5s")
    assert saved.returncode == 0, saved.stderr

    ran = await cli(cluster, "suite", "run", "shop", "--wait")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    [suite_run] = (await api.suite_list()).runs
    assert [s.state for s in suite_run.steps] == ["passed", "failed", "skipped"]
    assert suite_run.state == "failed"
    first, second = [await api.get(s.run_id) for s in suite_run.steps[:2]]
    assert (first.test, second.test) == ("first", "second")
    assert first.ended_at <= second.created_at  # in order, not side by side
    assert second.created_at - first.ended_at >= 0.5  # the pause
    assert suite_run.steps[2].run_id not in {r.run_id for r in (await api.list()).runs}
    assert target_stats(target)["requests"] == 40

    # stages: one test at rising rates
    await api.suite_save("ramp", mode="stages", tests=["first"], rates=[10.0, 30.0])
    started = await api.suite_run("ramp")

    async def done():
        run = await api.suite_get(started.id)
        return run if run.state != "running" else None

    ramp = await until(done, 40, "the ramp suite to end")
    assert ramp.state == "passed"
    rates = [(await api.get(s.run_id)).plan.rate for s in ramp.steps]
    assert rates == [10.0, 30.0]
    await api.close()


async def test_fires_missed_while_no_coordinator_ran_are_run_late_or_skipped_by_policy(cluster: Cluster):
    _, target = cluster.target()
    grace = {"SURGE_SCHEDULE_GRACE_S": "1"}
    first = cluster.coordinator(**grace)
    cluster.generator()
    api = await api_with(cluster, 1)
    js = api.nc.jetstream()
    await api.test_save(raw(SHORT_CHECKED, target, name="late"))
    await api.schedule_add("late-run", test="late", at="+2s", missed="run_late")
    await api.schedule_add("late-skip", test="late", at="+2s", missed="skip")
    first.kill()  # nobody is there at the fire time
    kv = await js.key_value(subjects.SCHEDULES_BUCKET)
    schedules = [msgspec.json.decode((await kv.get(k)).value) for k in await bus.kv_keys(kv)]
    due = max(s["at"] for s in schedules)
    await until(lambda: time.time() > due + 3, 10, "the fire time to be 3 s past")

    cluster.coordinator(**grace)

    async def settled():
        got = {f.schedule: f for f in await fires(js)}
        return got if len(got) == 2 and all(f.state != "claimed" for f in got.values()) else None

    got = await until(settled, 20, "both missed fires handled")
    assert got["late-skip"].state == "skipped" and got["late-skip"].late_s > 1
    assert got["late-run"].state == "started" and got["late-run"].late_s > 1
    await until(lambda: ended(api, got["late-run"].run_id), 30, "the late run to end")
    assert [r.run_id for r in (await api.list()).runs if r.test == "late"] == [got["late-run"].run_id]
    assert target_stats(target)["requests"] == 20
    await api.close()
