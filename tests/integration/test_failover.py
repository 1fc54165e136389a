"""Coordinator high availability: the leader lease, takeover, and generators on their own.

Real coordinators (two, with ids), real generators and target, a real nats-server.
The leader is SIGKILLed mid-run; the report of that run must hold every request the
target received, once.
"""

from __future__ import annotations

import time

import msgspec
import pytest
from nats.js.errors import KeyNotFoundError

from schemas import subjects
from schemas.api import API_ENDPOINTS
from schemas.control import Assignment, Lease
from tests.conftest import Cluster, api_with, beat_of, generators_registered, service_infos, target_stats, until
from tests.events import kv_until
from tests.integration.test_distributed_run import finished_report, start_and_follow
from tests.plans import CHECKED, raw

pytestmark = pytest.mark.timeout(60)


async def lease_holder(js) -> str | None:
    kv = await js.key_value(subjects.LEADER_BUCKET)
    try:
        entry = await kv.get(subjects.LEADER_KEY)
    except KeyNotFoundError:
        return None
    return msgspec.json.decode(entry.value, type=Lease).holder if entry.value else None


async def new_holder(js, old: str | None, limit_s: float) -> str:
    """The lease's holder once one other than ``old`` holds it: a watch of the lease."""
    kv = await js.key_value(subjects.LEADER_BUCKET)

    def held(latest: dict) -> str | None:
        value = latest.get(subjects.LEADER_KEY)
        holder = msgspec.json.decode(value, type=Lease).holder if value else None
        return holder if holder and holder != old else None

    return await kv_until(kv, subjects.LEADER_KEY, held, limit_s, f"a lease holder other than {old}")


async def leader_and_standby(cluster: Cluster):
    """coord-a, leading once it holds the lease, then coord-b as its standby; and a client."""
    coords = {"coord-a": cluster.coordinator(SURGE_COORDINATOR_ID="coord-a")}
    api = await api_with(cluster, 0)
    js = api.nc.jetstream()
    await new_holder(js, None, 10)
    coords["coord-b"] = cluster.coordinator(SURGE_COORDINATOR_ID="coord-b")
    return coords, api, js


async def test_killed_leader_is_replaced_within_5s_and_the_report_counts_every_request_once(
    cluster: Cluster,
):
    _, target = cluster.target()
    coords, api, js = await leader_and_standby(cluster)
    cluster.generator()
    cluster.generator()

    await generators_registered(api, 2)

    # the standby answers `nats micro info` and nothing else
    infos = await service_infos(api.nc, subjects.COORDINATOR_SERVICE, 2)
    roles = {i["metadata"]["coordinator_id"]: i for i in infos}
    assert {i["metadata"]["role"] for i in infos} == {"leader", "standby"}
    standby = next(i for i in infos if i["metadata"]["role"] == "standby")
    assert standby["endpoints"] == []
    leader_id = await lease_holder(js)
    assert roles[leader_id]["metadata"]["role"] == "leader"
    # the API table's endpoints, plus the intakes of generators' and mergers' stats
    served = {e["name"] for e in roles[leader_id]["endpoints"]}
    assert served == set(API_ENDPOINTS) | {"stats_ingest", "merged_ingest"}

    rate, duration = 200, 10
    started, feed = await start_and_follow(api, raw(CHECKED, target, rate=rate, duration=f"{duration}s"))
    await feed.wait_for(lambda s: s.seq >= 2, 10, "second 2")
    coords[leader_id].kill()
    killed_at = time.monotonic()
    new_leader = await new_holder(js, leader_id, 8)
    assert new_leader != leader_id

    async def answers() -> bool:
        try:
            return (await api.get(started.run_id)).state == "running"
        except Exception:
            return False

    await until(answers, 8, "the new leader answering run.get", every_s=0.05)
    takeover_s = time.monotonic() - killed_at
    print(f"takeover: {takeover_s:.2f}s")
    assert takeover_s <= 5.0
    # no generator left without its share: the assignments still add up to the run
    kv = await js.key_value(subjects.ASSIGN_BUCKET)
    shares = {}
    for gid in started.generators:
        a = msgspec.json.decode((await kv.get(gid)).value, type=Assignment)
        assert a.run_id == started.run_id and not a.stop
        shares[gid] = a.share
    assert sum(shares.values()) == pytest.approx(1.0)

    report = await finished_report(api, feed, started.run_id, limit_s=30)
    received = target_stats(target)["requests"]
    expected = rate * duration
    print(f"report totals {report.totals.requests}, target received {received}")
    assert report.state == "finished"
    assert report.totals.requests == received  # none lost, none counted twice
    assert abs(report.totals.requests - expected) <= expected * 0.01
    assert report.totals.errors == 0
    assert sum(g.requests for g in report.generators.values()) == report.totals.requests
    assert all(g.seconds == duration for g in report.generators.values()), report.generators
    assert [e.t for e in report.timeline] == list(range(duration))
    takeover = [e for e in report.timeline if any("takeover" in ev for ev in e.events)]
    assert takeover and takeover[0].gap, report.timeline
    assert any(f"from {leader_id}" in e for e in report.events)
    # the timeline is whole: the load never stopped, every second carries its rate
    assert sum(e.requests for e in report.timeline) == report.totals.requests
    assert all(abs(e.requests - rate) <= 0.03 * rate for e in report.timeline), report.timeline
    assert coords[new_leader].alive()
    await api.close()


async def test_generators_finish_alone_and_hand_their_buffered_intervals_to_a_new_leader(
    cluster: Cluster,
):
    _, target = cluster.target()
    first = cluster.coordinator(SURGE_COORDINATOR_ID="coord-1")
    cluster.generator()
    api = await api_with(cluster, 1)
    rate, duration = 100, 4
    started, feed = await start_and_follow(api, raw(CHECKED, target, rate=rate, duration=f"{duration}s"))
    await feed.wait_for(lambda s: s.seq >= 0, 10, "second 0")
    first.kill()

    # without any coordinator the generator runs its assignment to the end, then idles
    await beat_of(api.nc, "gen-1", lambda beat: beat.state == "idle", duration + 8,
                  "the generator finishing on its own")
    assert time.time() >= started.end_at
    sent = target_stats(target)["requests"]
    assert abs(sent - rate * duration) <= rate * duration * 0.01

    # a new coordinator takes the lease, recovers the run and receives the outbox
    cluster.coordinator(SURGE_COORDINATOR_ID="coord-2")
    report = await finished_report(api, feed, started.run_id, limit_s=20)
    assert report.totals.requests == sent == target_stats(target)["requests"]
    assert report.generators["gen-1"].seconds == duration
    assert any("takeover: coord-2 took over" in e for e in report.events), report.events
    await api.close()


async def test_without_any_coordinator_a_generator_stops_at_its_safety_limit(cluster: Cluster):
    _, target = cluster.target()
    coordinator = cluster.coordinator()
    cluster.generator(SURGE_MAX_RUN_S="3")
    api = await api_with(cluster, 1)
    rate = 100
    started, feed = await start_and_follow(api, raw(CHECKED, target, rate=rate, duration="60s"))
    await feed.wait_for(lambda s: s.seq >= 0, 10, "second 0")
    coordinator.kill()
    await beat_of(api.nc, "gen-1", lambda beat: beat.state == "idle", 10,
                  "the generator stopping at SURGE_MAX_RUN_S")
    assert time.time() < started.end_at - 45  # long before the plan's end
    sent = target_stats(target)["requests"]
    assert abs(sent - rate * 3) <= rate * 3 * 0.01
    await api.close()


async def test_a_renewal_whose_answer_was_lost_is_not_a_lost_lease(cluster: Cluster):
    """A renewal in flight when NATS stalls may land with its answer lost; the next one then
    finds the revision moved on by the leader's own hand. That is not a takeover: the
    leader carries on (it used to lose the lease and take it back, "from nobody"). A real
    takeover (another holder's value) is still one. The lease on a real nats-server's KV."""
    import nats

    from services.common import bus
    from services.coordinator.leader import LeaderLease

    nc = await nats.connect(cluster.url)
    kv = await bus.key_value(nc.jetstream(), subjects.LEADER_BUCKET, ttl_s=3.0)
    events: list[str] = []

    async def elected(_previous) -> None:
        events.append("elected")

    async def lost(why: str) -> None:
        events.append(f"lost: {why}")

    lease = LeaderLease(kv, "coord-x", on_elected=elected, on_lost=lost)
    await lease._try_claim()
    assert lease.is_leader and events == ["elected"]
    await lease._renew()  # an ordinary renewal
    # the fault: a renewal landed and its answer never came (what a stalled server does)
    await kv.update(subjects.LEADER_KEY, lease._value(), last=lease._revision)
    await lease._renew()
    assert lease.is_leader and events == ["elected"], events
    await lease._renew()  # and renewals go on from the revision that landed
    assert lease.is_leader and lease.holds()

    # another coordinator's value: that is a takeover
    await kv.put(subjects.LEADER_KEY, msgspec.json.encode(
        Lease(holder="coord-y", term=lease.term + 1, renewed_at=time.time(), lease_s=3.0)))
    await lease._renew()
    assert not lease.is_leader and events == ["elected", "lost: lease taken over"], events
    await nc.close()
