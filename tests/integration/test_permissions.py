"""A locked-down bus: per-role NATS users, subject permissions, TLS.

nats-server runs with the config ``surge up`` writes (services/cli/secure.py): users
per role with their allow lists and a server certificate from a fresh local CA. The
whole stack runs a test through it; then each role is tried where it must not go.
"""

from __future__ import annotations

import asyncio
import json

from pathlib import Path

import nats
import pytest

from schemas import subjects
from services.cli import secure
from services.common.client import CoordinatorClient
from services.common.bus import connect_options
from services.common.config import NatsAuth
from tests.conftest import Cluster, generators_registered, run_in, target_stats
from tests.events import Heard
from tests.plans import CHECKED, raw

pytestmark = pytest.mark.timeout(60)


class Secured:
    """Users per role and TLS, written first; then the nats-server starts with them."""

    def __init__(self, make_cluster, tmp: Path) -> None:
        self.secrets = tmp / "secrets"
        self.passwords = secure.write_secrets(self.secrets)
        self.tls = secure.make_certificates(tmp / "certs")
        self.cluster: Cluster = make_cluster(nats_conf=secure.server_config(self.passwords, self.tls))

    def env(self, role: str) -> dict[str, str]:
        return secure.role_env(role, self.secrets, self.tls)

    async def connect(self, role: str | None, tls: bool = True, errors: Heard | None = None):
        auth = NatsAuth(
            user=role or "", password=self.passwords.get(role or "", ""),
            tls_ca=self.tls.ca if tls else "",
        )

        async def on_error(exc: Exception) -> None:
            if errors is not None:
                errors.add(str(exc))

        return await nats.connect(
            self.cluster.url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False,
            error_cb=on_error, **connect_options(auth),
        )


async def test_roles_are_held_to_their_subjects_over_tls(make_cluster, tmp_path: Path):
    sec = Secured(make_cluster, tmp_path)
    cluster = sec.cluster
    _, target = cluster.target()
    cluster.coordinator(**sec.env("coordinator"))
    cluster.generator(**sec.env("generator"))
    api = CoordinatorClient(await sec.connect("cli"))

    await generators_registered(api, 1)

    # the stack works end to end with every service under its own user, over TLS
    from services.plan import loader

    started = await api.start(loader.from_obj(raw(CHECKED, target, rate=100, duration="2s")))

    record = await run_in(api.nc, started.run_id, limit_s=20)
    assert record.state == "finished"
    report = await api.report(started.run_id)
    assert report.totals.requests == target_stats(target)["requests"] == pytest.approx(200, abs=2)

    # a generator's credentials cannot start a run
    errors = Heard()
    gen = await sec.connect("generator", errors=errors)
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await gen.request(subjects.RUN_START, json.dumps(raw(CHECKED, target)).encode(), timeout=1)
    await errors.first(lambda e: "surge.api.run.start" in e, 5,
                       "a permissions violation for surge.api.run.start")
    assert any("permissions violation" in e.lower() for e in errors.items), errors.items
    await gen.close()

    # the UI's credentials cannot write an assignment
    errors = Heard()
    ui = await sec.connect("ui", errors=errors)
    kv = await ui.jetstream(timeout=1).key_value(subjects.ASSIGN_BUCKET)
    with pytest.raises(Exception):
        await kv.put("gen-1", b'{"run_id": "evil"}')
    await errors.first(lambda e: f"$kv.{subjects.ASSIGN_BUCKET}" in e.lower(), 5,
                "a permissions violation for the assignments bucket")
    # ...but it may read the registry and call the API
    assert len((await CoordinatorClient(ui).generators()).generators) == 1
    await ui.close()

    # no credentials, wrong password, or no TLS: no connection at all
    with pytest.raises(Exception):
        await sec.connect(None)
    sec.passwords["cli-wrong"] = "nope"
    with pytest.raises(Exception):
        await nats.connect(cluster.url, user="cli", password="nope", connect_timeout=2,
                           max_reconnect_attempts=0, allow_reconnect=False,
                           **{k: v for k, v in connect_options(
                               NatsAuth(tls_ca=sec.tls.ca)).items()})
    with pytest.raises(Exception):
        await asyncio.wait_for(sec.connect("cli", tls=False), 5)
    await api.close()
