"""The Kubernetes bus is locked down: the committed NATS users work in a real server.

deploy/k8s/base/nats-auth.conf (rendered from services/cli/secure.py by
scripts/render-nats-auth.py) is included by a real nats-server on a free port, with
the passwords in the environment as the StatefulSet passes them
(``$NATS_PASSWORD_<ROLE>``). Then each role is tried where it must and must not go,
and the server flags of components/nats-tls are tried with a fresh CA.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
import yaml

from schemas import subjects
from services.cli import secure
from services.common.bus import connect_options
from services.common.config import NatsAuth
from tests.conftest import NATS_SERVER, ROOT, free_port
from tests.events import Heard, piped

pytestmark = pytest.mark.timeout(30)

K8S = ROOT / "deploy/k8s"
AUTH_CONF = K8S / "base/nats-auth.conf"


def password_variables() -> list[str]:
    """The environment variables the committed authorization block reads."""
    return re.findall(r"^\s*password: \$([A-Z_]+)$", AUTH_CONF.read_text(), re.M)


def nats_container() -> dict:
    docs = yaml.safe_load_all((K8S / "base/nats.yaml").read_text())
    sts = next(d for d in docs if d and d["kind"] == "StatefulSet")
    return sts["spec"]["template"]["spec"]["containers"][0]


class Server:
    """nats-server with the committed users (and optionally the TLS flags), on a free port."""

    def __init__(self, tmp: Path, extra_args: list[str] = ()) -> None:
        self.port = free_port()
        # as the Secret should hold them: a letter, then letters and digits
        self.passwords = {role: "p" + secrets.token_hex(16) for role in secure.ROLES}
        (tmp / "nats-auth.conf").write_text(AUTH_CONF.read_text())
        conf = tmp / "nats.conf"
        conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"jetstream {{ store_dir: {str(tmp / 'js')!r} }}\n"
            "include ./nats-auth.conf\n"
        )
        env = {**os.environ}
        env.update({f"NATS_PASSWORD_{r.upper()}": p for r, p in self.passwords.items()})
        self.proc, self.lines = piped([NATS_SERVER, "-c", str(conf), *extra_args], tmp / "nats.log", env=env)
        self.lines.wait_said("Server is ready", 10)
        self.url = f"nats://127.0.0.1:{self.port}"

    async def connect(self, role: str | None, errors: Heard | None = None,
                      password: str | None = None, **tls) -> nats.NATS:
        auth = NatsAuth(user=role or "",
                        password=password or self.passwords.get(role or "", ""), **tls)

        async def on_error(exc: Exception) -> None:
            if errors is not None:
                errors.add(str(exc))

        return await nats.connect(self.url, connect_timeout=2, allow_reconnect=False,
                                  max_reconnect_attempts=0, error_cb=on_error,
                                  **connect_options(auth))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.lines.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    yield srv
    srv.stop()


def violation(errors: Heard, subject: str) -> bool:
    return any("permissions violation" in e.lower() and subject.lower() in e.lower()
               for e in errors.items)


def test_the_nats_container_gets_every_password_the_users_read():
    variables = password_variables()
    assert len(variables) == len(secure.ROLES)
    env = {e["name"]: e for e in nats_container()["env"]}
    for role in secure.ROLES:
        ref = env[f"NATS_PASSWORD_{role.upper()}"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "surge-nats-users", "key": f"{role}-password"}
    assert set(variables) <= set(env)


async def test_committed_users_hold_each_role_to_its_subjects(server: Server):
    # the cli user (and the ui: same allow list) drives the coordinator's API
    coordinator = await server.connect("coordinator")

    async def answer(msg) -> None:
        await msg.respond(b'{"run_id": "r1"}')

    await coordinator.subscribe(subjects.RUN_START, cb=answer)
    await coordinator.flush()
    cli = await server.connect("cli")
    reply = await cli.request(subjects.RUN_START, b"{}", timeout=2)
    assert reply.data == b'{"run_id": "r1"}'

    # a generator's credentials cannot start a run
    errors = Heard()
    gen = await server.connect("generator", errors=errors)
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await gen.request(subjects.RUN_START, b"{}", timeout=0.5)
    await errors.until(lambda: violation(errors, subjects.RUN_START), 3,
                "a permissions violation for surge.api.run.start")

    # the coordinator writes assignments; the UI's credentials cannot
    kv = await coordinator.jetstream(timeout=2).create_key_value(bucket=subjects.ASSIGN_BUCKET)
    await kv.put("gen-1", b'{"run_id": "r1"}')
    errors = Heard()
    ui = await server.connect("ui", errors=errors)
    subject = f"$KV.{subjects.ASSIGN_BUCKET}.gen-1"
    await ui.publish(subject, b'{"run_id": "evil"}')
    await ui.flush()
    await errors.until(lambda: violation(errors, f"$KV.{subjects.ASSIGN_BUCKET}"), 3,
                "a permissions violation for the assignments bucket")
    assert (await kv.get("gen-1")).value == b'{"run_id": "r1"}'

    # no credentials, or a wrong password: no connection at all
    with pytest.raises(Exception):
        await server.connect(None)
    with pytest.raises(Exception):
        await server.connect("cli", password="p" + secrets.token_hex(16))
    for nc in (coordinator, cli, gen, ui):
        await nc.close()


def tls_flags(cert_dir: Path) -> list[str]:
    """components/nats-tls' nats-server flags, with its mount path moved to ``cert_dir``."""
    ops = yaml.safe_load((K8S / "components/nats-tls/nats-server.yaml").read_text())
    flags = [op["value"] for op in ops if op["path"].endswith("/command/-")]
    assert flags[0] == "--tls"
    return [f.replace("/etc/nats-tls/", f"{cert_dir}/") for f in flags]


async def test_tls_component_flags_require_tls_checked_as_nats(tmp_path: Path):
    certs = secure.make_certificates(tmp_path / "certs", hosts=("nats",))
    (tmp_path / "certs/tls.crt").write_bytes(Path(certs.cert).read_bytes())
    (tmp_path / "certs/tls.key").write_bytes(Path(certs.key).read_bytes())
    (tmp_path / "srv").mkdir()
    srv = Server(tmp_path / "srv", tls_flags(tmp_path / "certs"))
    try:
        # as the pods connect: the CA, and the name "nats" checked whatever the address
        cli = await srv.connect("cli", tls_ca=certs.ca, tls_hostname="nats")
        await cli.publish(subjects.RUN_START, b"{}")
        await cli.flush()
        await cli.close()
        with pytest.raises(Exception):
            await asyncio.wait_for(srv.connect("cli"), 5)  # plain TCP
        with pytest.raises(Exception):
            await asyncio.wait_for(srv.connect("cli", tls_ca=certs.ca), 5)  # 127.0.0.1 not in cert
    finally:
        srv.stop()
