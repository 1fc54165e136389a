"""NATS goes away mid-run: every service reconnects, re-subscribes, re-watches, and
the run still ends with its totals within 1% of rate × duration.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import msgspec
import nats
import pytest

from schemas import subjects
from schemas.control import Heartbeat
from tests.conftest import Cluster, api_with, generators_registered, run_in, service_infos, target_stats, until
from services.common.client import CoordinatorClient
from tests.plans import CHECKED, plan

pytestmark = pytest.mark.timeout(60)


async def wait_state(api: CoordinatorClient, run_id: str, states: set[str], limit_s: float):
    """A probe, for just after the server went away: the client is reconnecting, and a
    watch made now may not outlive it (run_in where the bus is steady)."""
    async def reached():
        try:
            record = await api.get(run_id)
        except Exception:
            return None
        return record if record.state in states else None

    return await until(reached, limit_s, f"run {run_id} in {states}", every_s=0.2)


async def test_nats_restart_mid_run_every_service_recovers_and_totals_hold(cluster: Cluster):
    _, target = cluster.target()
    cluster.coordinator()
    cluster.generator()
    cluster.generator()
    api = await api_with(cluster, 2)
    rate, duration = 200, 10
    started = await api.start(plan(CHECKED, target, rate=rate, duration=f"{duration}s"))
    await run_in(api.nc, started.run_id, {"running"}, 5)

    async def second_done() -> bool:
        return target_stats(target)["requests"] >= rate * 2

    await until(second_done, 10, "two seconds of load")
    cluster.restart_nats(kill=True)

    # the client of the test reconnects too; the run goes on and ends on time
    record = await wait_state(api, started.run_id, {"finished", "stopped", "failed"}, 30)
    report = await api.report(started.run_id)
    received = target_stats(target)["requests"]
    expected = rate * duration
    print(f"after a NATS restart: report {report.totals.requests}, target {received}")
    assert record.state == "finished", (record.state, record.error, report.events)
    assert abs(report.totals.requests - expected) <= expected * 0.01
    assert report.totals.requests == received
    assert not any("lost" in e for e in report.events), report.events

    # micro services are registered again, the registry watch is live again
    gens = await service_infos(api.nc, subjects.GENERATOR_SERVICE, 2)
    coords = await service_infos(api.nc, subjects.COORDINATOR_SERVICE, 1)
    assert len(coords) == 1 and coords[0]["metadata"]["role"] == "leader"
    assert len(gens) == 2
    second = await api.start(plan(CHECKED, target, rate=100, duration="2s"))
    assert sorted(second.generators) == ["gen-1", "gen-2"]
    await run_in(api.nc, second.run_id, {"finished"}, 15)
    assert (await api.report(second.run_id)).totals.requests == pytest.approx(200, abs=2)
    await api.close()


async def test_a_generator_whose_beat_died_with_nats_registers_again_at_once(cluster: Cluster):
    """A request in flight when NATS dies never gets its answer. The generator's heartbeat
    loop waited nats-py's 5 s for it, so after a NATS restart its beats stayed away past the
    coordinator's 2.2 s: a live generator declared lost, then hot-added again (seen in CI
    under load). It beats again on reconnecting, each request bounded by the period."""
    gen = cluster.generator()
    await gen.said("started", 20)  # registered: its first beat is stored
    # the server frozen for longer than a heartbeat period: the generator's next beat is
    # sent and never answered (the length of the outage, not a wait for an event)
    os.kill(cluster.nats.pid, signal.SIGSTOP)
    await asyncio.sleep(1.5)
    cluster.restart_nats(kill=True)
    restarted = time.time()
    nc = await nats.connect(cluster.url)
    registry = await nc.jetstream().key_value(subjects.GENERATORS_BUCKET)
    watcher = await registry.watch(gen.name)
    async with asyncio.timeout(10):
        async for entry in watcher:
            if entry is not None and entry.value:
                beat = msgspec.json.decode(entry.value, type=Heartbeat)
                if beat.sent_at > restarted:
                    break
    await watcher.stop()
    stored_s = entry.created.timestamp() - restarted
    print(f"first beat stored {stored_s:.2f}s after the server was back")
    assert stored_s <= 2.0  # the coordinator's grace after a reconnect is dead_after_s (2.2 s)
    await nc.close()


async def test_three_node_cluster_survives_losing_a_node_mid_run(make_cluster):
    cluster = make_cluster(nodes=3, service_env={"SURGE_KV_REPLICAS": "3"})
    await cluster.jetstream_ready()
    _, target = cluster.target()
    # generators first: they create the registry and assignment buckets with one
    # replica; the coordinator scales them (and makes the rest) to three
    cluster.generator()
    cluster.generator()
    cluster.coordinator()
    # a client that, like the services, reconnects to another node for as long as it takes
    nc = await nats.connect(servers=cluster.url.split(","), max_reconnect_attempts=-1,
                            reconnect_time_wait=0.2)
    api = CoordinatorClient(nc)

    await generators_registered(api, 2)
    js = api.nc.jetstream()
    for stream in (f"KV_{subjects.GENERATORS_BUCKET}", f"KV_{subjects.ASSIGN_BUCKET}",
                   f"KV_{subjects.RUNS_BUCKET}", f"KV_{subjects.LEADER_BUCKET}",
                   subjects.RUNLOG_STREAM):
        assert (await js.stream_info(stream)).config.num_replicas == 3, stream
    rate, duration = 200, 10
    started = await api.start(plan(CHECKED, target, rate=rate, duration=f"{duration}s"))

    async def two_seconds() -> bool:
        return target_stats(target)["requests"] >= rate * 2

    await until(two_seconds, 10, "two seconds of load")
    # the harshest node to lose: the one leading the lease bucket's stream
    leader = (await js.stream_info(f"KV_{subjects.LEADER_BUCKET}")).cluster.leader
    cluster.kill_node(int(leader.removeprefix("n")) - 1)
    record = await wait_state(api, started.run_id, {"finished", "stopped", "failed"}, 30)
    report = await api.report(started.run_id)
    received = target_stats(target)["requests"]
    expected = rate * duration
    print(f"3-node cluster, node killed: report {report.totals.requests}, target {received}")
    assert record.state == "finished", (record.state, record.error, report.events)
    assert abs(report.totals.requests - expected) <= expected * 0.01
    assert report.totals.requests == received
    await api.close()
