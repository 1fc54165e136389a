"""A generator lost and back in the same run runs its share again.

A stall (SIGSTOP here; a NATS restart on a loaded machine in CI) makes the coordinator
declare a member lost and move its share; the generator, alive after all, gets the stop,
ends its run and beats "idle", and the coordinator takes it back (hot add). It used to
ignore that assignment — it had finished that run — while the coordinator counted on it:
its share of every second after went unsent (319 of 2,000 requests in one CI run), and
the report said pass. Real nats-server, coordinator, generators and a target that counts
what each generator sent per wall second.
"""

from __future__ import annotations

import signal

import pytest

from tests.conftest import Cluster, target_stats
from tests.integration.test_distributed_run import finished_report
from tests.integration.test_fleet import a_whole_second_after, fleet, under_way, wall_second

pytestmark = pytest.mark.timeout(90)


async def test_a_generator_lost_and_back_runs_its_share_again(cluster: Cluster):
    target, api, gens = await fleet(cluster, "gen-a", "gen-b")
    gen_b = gens["gen-b"]
    run, feed = await under_way(api, target, "16s")

    gen_b.popen.send_signal(signal.SIGSTOP)  # the fault: a stall long enough to be lost
    try:
        await feed.wait_for(lambda s: any("gen-b lost" in e for e in s.events), 10, "gen-b lost")
    finally:
        gen_b.popen.send_signal(signal.SIGCONT)
    joined = await feed.wait_for(lambda s: any("gen-b joined" in e for e in s.events), 10, "gen-b back")
    # once a second of the run has it sending its half by its own count (on a loaded box
    # it may take a second or two to take the assignment up), the target sees that half
    # in the two whole wall seconds after
    back = await feed.wait_for(
        lambda s: s.seq > joined.seq and "gen-b" in s.generators and s.generators["gen-b"].sent >= 45,
        10, "gen-b sending its half")
    _, sec = await a_whole_second_after(feed, back.at + 1)
    assert wall_second(target, "gen-b", sec) == pytest.approx(50, rel=0.1, abs=3), gen_b.output()
    assert wall_second(target, "gen-a", sec) == pytest.approx(50, rel=0.1, abs=3)
    assert "run assigned again" in gen_b.output()

    report = await finished_report(api, feed, run)
    assert report.state == "finished", (report.state, report.events)
    events = "\n".join(report.events)
    assert "gen-b lost" in events and "gen-b joined" in events, events
    assert "not running its assignment" not in events, events  # it did run it
    # exact: what the report counts is what the target received, generator by generator
    by_gen = target_stats(target)["by_generator"]
    assert {g: t.requests for g, t in report.generators.items()} == by_gen
    await api.close()
