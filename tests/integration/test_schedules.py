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
from schemas.schedules import Fire, SuiteRun
from services.common import bus
from tests.conftest import Cluster, api_with, generators_registered, run_in, target_stats
from tests.events import kv_until
from tests.integration.test_failover import leader_and_standby, lease_holder, new_holder
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


async def fires_until(js, match, limit_s: float, what: str) -> dict[str, Fire]:
    """Every fire by schedule, once ``match(fires)`` holds: a watch of the fires bucket."""
    kv = await js.key_value(subjects.FIRES_BUCKET)

    def matched(latest: dict):
        got = {f.schedule: f for f in (msgspec.json.decode(v, type=Fire) for v in latest.values() if v)}
        return got if match(got) else None

    return await kv_until(kv, ">", matched, limit_s, what)


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

    await new_holder(js, leader, 10)
    got = await fires_until(js, lambda got: [f.state for f in got.values()] == ["started"], 20,
                            "the fire marked started")
    [fire] = got.values()
    assert fire.run_id == claimed.run_id
    await run_in(api.nc, fire.run_id)  # the fired run ended
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

    suites = await api.nc.jetstream().key_value(subjects.SUITES_BUCKET)
    key = f"run.{started.id}"

    def done(latest: dict) -> bool:
        return latest.get(key) is not None and msgspec.json.decode(latest[key], type=SuiteRun).state != "running"

    await kv_until(suites, key, done, 40, "the ramp suite to end")
    ramp = await api.suite_get(started.id)
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
    await asyncio.sleep(max(due + 3 - time.time(), 0))  # the fault itself: nobody there at the fire time, and 3 s on

    cluster.coordinator(**grace)

    got = await fires_until(js, lambda got: len(got) == 2 and all(f.state != "claimed" for f in got.values()),
                            20, "both missed fires handled")
    assert got["late-skip"].state == "skipped" and got["late-skip"].late_s > 1
    assert got["late-run"].state == "started" and got["late-run"].late_s > 1
    await run_in(api.nc, got["late-run"].run_id)  # the late run ended
    assert [r.run_id for r in (await api.list()).runs if r.test == "late"] == [got["late-run"].run_id]
    assert target_stats(target)["requests"] == 20
    await api.close()
