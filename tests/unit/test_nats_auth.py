"""Credentials and TLS from SURGE_NATS_*; the per-role permissions surge up writes."""

from __future__ import annotations

import ssl

from schemas import subjects
from services.cli import secure
from services.common.bus import connect_options
from services.common.config import NatsAuth, nats_auth


def test_nothing_set_means_plain_tcp_without_auth():
    assert connect_options(nats_auth({})) == {}


def test_password_comes_from_a_file_when_not_given(tmp_path):
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    auth = nats_auth({"SURGE_NATS_USER": "generator", "SURGE_NATS_PASSWORD_FILE": str(path)})
    assert connect_options(auth) == {"user": "generator", "password": "s3cret"}


def test_a_creds_file_wins_over_user_and_password():
    auth = NatsAuth(user="u", password="p", creds="/x/surge.creds")
    assert connect_options(auth) == {"user_credentials": "/x/surge.creds"}


def test_a_ca_turns_tls_on(tmp_path):
    files = secure.make_certificates(tmp_path)
    options = connect_options(NatsAuth(tls_ca=files.ca))
    assert isinstance(options["tls"], ssl.SSLContext)
    assert options["tls"].verify_mode == ssl.CERT_REQUIRED


def _allowed(role: str, kind: str) -> list[str]:
    return secure.permissions(role)[kind]["allow"]


def test_only_clients_of_the_api_may_publish_on_it():
    for role in ("generator", "coordinator"):
        assert not any(s.startswith(subjects.API) for s in _allowed(role, "publish")), role
    for role in ("ui", "cli"):
        assert f"{subjects.API}.>" in _allowed(role, "publish")


def test_only_the_coordinator_writes_assignments_and_run_records():
    for role in ("generator", "monitor", "ui", "cli"):
        pub = _allowed(role, "publish")
        assert f"$KV.{subjects.ASSIGN_BUCKET}.>" not in pub and "$JS.API.>" not in pub, role
        assert f"$KV.{subjects.RUNS_BUCKET}.>" not in pub, role
    assert f"$KV.{subjects.ASSIGN_BUCKET}.>" in _allowed("coordinator", "publish")


def test_server_config_holds_every_role_and_tls(tmp_path):
    files = secure.make_certificates(tmp_path)
    text = secure.server_config({r: "pw" for r in secure.ROLES}, files)
    for role in secure.ROLES:
        assert f'"user": "{role}"' in text
    assert "tls " in text and files.cert in text
