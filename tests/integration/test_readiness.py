"""A real generator's readiness file: present once it is in the registry, gone when it stops.

This is what the generator Deployment's readiness probe (`test -f /tmp/surge-ready`,
deploy/k8s/base/generator.yaml) relies on.
"""

from __future__ import annotations

import signal
from pathlib import Path

import nats
import pytest

from schemas import subjects
from tests.conftest import Cluster, until

pytestmark = pytest.mark.timeout(60)


async def test_ready_file_follows_registration(cluster: Cluster, tmp_path: Path):
    ready = tmp_path / "surge-ready"
    gen = cluster.generator(generator_id="gen-ready", SURGE_READY_FILE=str(ready))
    await until(ready.exists, 20, "the readiness file")

    nc = await nats.connect(cluster.url)
    try:
        kv = await nc.jetstream().key_value(subjects.GENERATORS_BUCKET)
        entry = await kv.get("gen-ready")  # ready means registered: the heartbeat is stored
        assert entry.value
    finally:
        await nc.close()

    assert gen.stop() == 0
    assert not ready.exists()


async def test_a_generator_stopped_the_moment_it_is_ready_exits_cleanly(cluster: Cluster, tmp_path: Path):
    # SIGTERM while its KV watch is still subscribing: nats-py swallows that cancellation,
    # and the stop waited on the watch until the process was killed (7 of 12 here, before
    # runner.cancel_tasks cancelled again)
    for i in range(4):
        ready = tmp_path / f"ready-{i}"
        gen = cluster.generator(generator_id=f"gen-quick-{i}", SURGE_READY_FILE=str(ready))
        await until(ready.exists, 20, "the readiness file", every_s=0.001)
        gen.popen.send_signal(signal.SIGTERM)
        assert gen.popen.wait(15) == 0, gen.output()  # one SIGTERM: a clean stop, exit 0
        assert not ready.exists()
