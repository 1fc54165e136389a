"""A real generator's readiness file: present once it is in the registry, gone when it stops.

This is what the generator Deployment's readiness probe (`test -f /tmp/surge-ready`,
deploy/k8s/base/generator.yaml) relies on.
"""

from __future__ import annotations

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
