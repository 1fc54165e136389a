"""Contexts: saved, made current, and where each setting of a command comes from."""

from __future__ import annotations

import pytest

from schemas.errors import NotFound
from services.cli.__main__ import parse
from services.cli.connection import settings
from services.common import contexts


@pytest.fixture
def env(tmp_path):
    pw = tmp_path / "cli.password"
    pw.write_text("from-file\n")
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    contexts.save(contexts.Context(name="local", url="nats://127.0.0.1:4333", user="cli",
                                   password_file=str(pw), ca="/x/ca.pem"), environ, make_current=True)
    return environ


def test_the_current_context_is_used_when_nothing_else_is_said(env):
    s = settings(parse(["ls"]), env)
    assert (s.url, s.auth.user, s.auth.password, s.auth.tls_ca, s.source, s.context) == (
        "nats://127.0.0.1:4333", "cli", "from-file", "/x/ca.pem", "context local", "local")


def test_another_server_named_by_flag_or_variable_leaves_the_context_out(env):
    for argv, extra in ((["ls", "--nats", "nats://other:4222"], {}),
                        (["ls"], {"SURGE_NATS_URL": "nats://other:4222"})):
        s = settings(parse(argv), {**env, **extra})
        assert (s.url, s.auth.user, s.auth.tls_ca, s.context) == ("nats://other:4222", "", "", "")


def test_naming_the_context_s_own_server_keeps_the_context(env):
    for argv, extra in ((["ls", "--nats", "nats://127.0.0.1:4333"], {}),
                        (["ls", "--nats", "tls://127.0.0.1:4333"], {}),
                        (["ls", "-s", "127.0.0.1:4333"], {}),
                        (["ls"], {"SURGE_NATS_URL": "nats://127.0.0.1:4333"})):
        s = settings(parse(argv), {**env, **extra})
        assert (s.auth.user, s.auth.password, s.auth.tls_ca) == ("cli", "from-file", "/x/ca.pem"), argv
    s = settings(parse(["ls", "--nats", "nats://127.0.0.1:4334"]), env)  # another port
    assert (s.auth.user, s.auth.tls_ca) == ("", "")


def test_flags_and_variables_override_single_fields_of_the_context(env):
    s = settings(parse(["ls", "--user", "ui"]), {**env, "SURGE_NATS_TLS_CA": "/y/ca.pem"})
    assert (s.url, s.auth.user, s.auth.tls_ca) == ("nats://127.0.0.1:4333", "ui", "/y/ca.pem")
    assert s.source == "context local + SURGE_NATS_* + flags" and s.context == ""


def test_no_context_at_all_means_the_default_local_url(tmp_path):
    s = settings(parse(["ls"]), {"XDG_CONFIG_HOME": str(tmp_path)})
    assert (s.url, s.source) == ("nats://127.0.0.1:4222", "default")


def test_use_switches_the_current_context_and_unknown_names_are_refused(env):
    contexts.save(contexts.Context(name="staging", url="tls://nats.staging:4222"), env)
    assert contexts.names(env) == ["local", "staging"]
    contexts.use("staging", env)
    assert contexts.current(env).url == "tls://nats.staging:4222"
    assert settings(parse(["--context", "local", "ls"]), env).url == "nats://127.0.0.1:4333"
    with pytest.raises(NotFound, match="known: local, staging"):
        contexts.use("prod", env)
    contexts.remove("staging", env)
    assert contexts.names(env) == ["local"] and contexts.current(env) is None


def test_a_service_started_by_hand_takes_the_context_only_without_surge_nats_variables(env):
    assert contexts.fallback_env(env)["SURGE_NATS_URL"] == "nats://127.0.0.1:4333"
    assert contexts.fallback_env({**env, "SURGE_NATS_URL": "nats://x:1"}) == {}


def test_the_default_config_dir_is_under_home(tmp_path):
    assert contexts.config_dir({"HOME": str(tmp_path)}) == tmp_path / ".config" / "surge"


def test_a_context_whose_password_file_is_gone_is_one_clear_error(env, tmp_path):
    from services.cli.connection import CliError

    (tmp_path / "cli.password").unlink()  # `make clean` removed .surge/
    with pytest.raises(CliError, match="cannot read the NATS password file .*context local"):
        settings(parse(["ls"]), env)
