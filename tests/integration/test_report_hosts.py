"""The report's hosts section with real parts: a monitor on this machine, a coordinator, a
generator capped at one engine (SURGE_WORKERS=1) asked for far more than one core can
send, and nginx as the target (fast enough that the generator, not it, is the limit).
"""

from __future__ import annotations

import asyncio
import shutil
import socket

import msgspec
import nats
import pytest

from bench.nginx import Nginx
from schemas import subjects
from schemas.host import HostSample
from schemas.stats import LiveSnapshot
from tests import plans
from tests.conftest import Cluster, api_with
from tests.events import Heard

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not shutil.which("nginx") and not shutil.which("/usr/sbin/nginx"),
                       reason="nginx not installed (make debs)"),
]

SECONDS = 4
RATE = 400_000  # far beyond one engine: wrk, the ceiling here, does ~115k/s on one core (docs/engine.md)


async def test_report_hosts_cover_every_second_and_flag_the_capped_generator(
    cluster: Cluster, make_monitor
):
    here = socket.gethostname()  # the monitor's and the generator's host name
    nc = await nats.connect(cluster.url)
    heard = await Heard.subscribe(nc, subjects.HOST_ALL, lambda msg: msgspec.json.decode(msg.data, type=HostSample))
    samples = heard.items
    with Nginx(core=None) as nginx:
        make_monitor(SURGE_SAMPLE_S="1")  # on this machine, by its own name
        cluster.coordinator()
        cluster.generator(SURGE_WORKERS="1")
        api = await api_with(cluster, 1)
        await heard.until(lambda: samples, 20, "the monitor's first sample")
        plan = plans.plan(plans.BASIC, nginx.url.rsplit("/", 1)[0], name="capped", rate=RATE,
                          duration=f"{SECONDS}s", connections=64, timeout="2s",
                          requests=[{"name": "page", "path": "/index.txt"}])
        ended = asyncio.Event()

        async def on_live(msg) -> None:
            if msgspec.json.decode(msg.data, type=LiveSnapshot).final:
                ended.set()

        started = await api.start(plan)
        await nc.subscribe(subjects.live(started.run_id), cb=on_live)
        await asyncio.wait_for(ended.wait(), 40)
        report = await api.report(started.run_id)
    await nc.close()
    await api.close()

    hosts = report.hosts
    assert hosts is not None and hosts.seconds == SECONDS == len(report.timeline)
    [host] = hosts.hosts
    assert (host.host, host.monitored, host.generators) == (here, True, ["gen-1"])
    for series in (host.cpu_pct, host.iowait_pct, host.steal_pct, host.mem_pct,
                   host.net_rx_bps, host.tcp_retrans_ps):
        assert len(series) == SECONDS and None not in series  # every second of the run
    assert all(0.0 < c <= 100.0 for c in host.cpu_pct)
    assert host.cores == len(samples[-1].cpu_per_core)
    assert len(host.tcp["ESTABLISHED"]) == SECONDS and min(host.tcp["ESTABLISHED"]) >= 64

    [gen] = hosts.generators
    assert (gen.generator_id, gen.host, gen.cores) == ("gen-1", here, 1)
    assert len(gen.cpu_pct) == SECONDS and None not in gen.cpu_pct
    print(f"generator CPU per second: {gen.cpu_pct}; host CPU: {host.cpu_pct}; "
          f"achieved {report.totals.achieved_rps:.0f}/s of {RATE}")
    assert report.totals.achieved_rps < RATE * 0.8  # it could not keep up ...
    assert gen.limited and hosts.limited_by == ["gen-1"]  # ... and its core was why
    assert hosts.note.startswith("the generator, not the target, set this rate: gen-1 was "
                                 "saturated in ")
