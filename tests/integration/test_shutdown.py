"""A service stops on the first SIGTERM whatever state it is in.

Before NATS was ever reachable, while ``start()`` is still trying to connect (a pod
whose NATS is not up yet must not need a SIGKILL to go away); and when NATS goes down
before or with the service (a bench's or ``surge up``'s teardown): the goodbye over the
bus is bounded, then the connection is closed, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from nats.js.errors import KeyNotFoundError

from schemas import subjects
from tests.conftest import Cluster, free_port
from tests.events import kv_until

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("module", ["generator", "coordinator", "monitor"])
async def test_sigterm_while_nats_is_unreachable_exits_cleanly(cluster: Cluster, module: str):
    nowhere = f"nats://127.0.0.1:{free_port()}"
    proc = cluster.service(module, name=f"{module}-no-nats", SURGE_NATS_URL=nowhere)
    await proc.said("nats error", 20, f"{module} trying to reach NATS")
    assert proc.alive(), proc.output()
    began = time.monotonic()
    code = await asyncio.to_thread(proc.stop, 10.0)
    assert code == 0, proc.output()
    assert time.monotonic() - began < 5
    assert "stopped before it had started" in proc.output()


STOP_BOUND_S = 4.0  # bus.DISCONNECT_S + CLOSE_S, and a second for the process itself


@pytest.mark.parametrize("module", ["generator", "coordinator", "monitor", "ui"])
@pytest.mark.parametrize("nats_goes", ["before", "with"])
async def test_sigterm_exits_in_bounded_time_when_nats_goes_down(cluster: Cluster, module: str,
                                                                 nats_goes: str):
    """NATS killed before the SIGTERM, or stopped at the same moment (a bench's teardown):
    the service's goodbye cannot be heard, and it still exits, 0, within a few seconds."""
    proc = cluster.service(module, name=f"{module}-doomed", SURGE_GENERATOR_ID=f"{module}-doomed",
                           SURGE_UI_PORT=str(free_port()))
    await proc.said("started", 20)
    assert proc.alive(), proc.output()
    if nats_goes == "before":
        cluster.nats.kill()
        await proc.said("nats disconnected", 10, f"{module} losing NATS")
    else:
        cluster.nats.popen.terminate()
    began = time.monotonic()
    code = await asyncio.to_thread(proc.stop, 15.0)
    took = time.monotonic() - began
    assert code == 0, proc.output()
    assert took < STOP_BOUND_S, f"{module} took {took:.1f}s to stop\n{proc.output()}"
    assert "stopped" in proc.output()


async def test_sigterm_with_nats_up_says_goodbye_cleanly(cluster: Cluster):
    """The bound does not cut a goodbye short: with NATS up, the generator leaves the
    registry at once (no TTL wait for the coordinator) and drains without complaint."""
    gen = cluster.generator(generator_id="gen-goodbye")
    nc = await nats.connect(cluster.url)
    try:
        await gen.said("started", 20)  # its bucket made: now it can be watched
        kv = await nc.jetstream().key_value(subjects.GENERATORS_BUCKET)
        await kv_until(kv, "gen-goodbye", lambda latest: latest.get("gen-goodbye"), 10,
                       "the generator registered")
        assert await asyncio.to_thread(gen.stop, 10.0) == 0, gen.output()
        with pytest.raises(KeyNotFoundError):  # deleted, not expired: the TTL is 3 s
            await kv.get("gen-goodbye")
    finally:
        await nc.close()
    assert "unclean disconnect" not in gen.output()
