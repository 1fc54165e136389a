"""A service stops on the first SIGTERM whatever state it is in.

Here: before NATS was ever reachable, while ``start()`` is still trying to connect
(a pod whose NATS is not up yet must not need a SIGKILL to go away).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import Cluster, free_port, until

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("module", ["generator", "coordinator", "monitor"])
async def test_sigterm_while_nats_is_unreachable_exits_cleanly(cluster: Cluster, module: str):
    nowhere = f"nats://127.0.0.1:{free_port()}"
    proc = cluster.service(module, name=f"{module}-no-nats", SURGE_NATS_URL=nowhere)
    await until(lambda: "nats error" in proc.output() or not proc.alive(), 20,
                f"{module} trying to reach NATS")
    assert proc.alive(), proc.output()
    began = time.monotonic()
    code = await asyncio.to_thread(proc.stop, 10.0)
    assert code == 0, proc.output()
    assert time.monotonic() - began < 5
    assert "stopped before it had started" in proc.output()
