"""Choosing HTTP/1.1 or HTTP/2 for a flow run, and each transport's error kinds (no network
beyond a refused port on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from services.plan import loader
from schemas.errors import InvalidPlan
from services.generator import transport
from services.generator.pool import Pool
from services.generator.h2pool import H2Pool
from services.generator.flows import needs_users
from services.generator.transport import choose
from tests import plans

pytestmark = pytest.mark.timeout(10)


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_http2_is_auto_by_default_and_yaml_off_means_off():
    assert plans.plan(plans.ONE_FLOW).http2 == "auto"
    assert plans.plan(plans.ONE_FLOW, http2="off").http2 == "off"
    assert plans.plan(plans.ONE_FLOW, http2=False).http2 == "off"  # YAML 1.1 reads `http2: off` as false
    assert loader.loads("name: p\ntarget: https://a.test\nrate: 1\nduration: 1\n"
                       "requests: [{name: r}]\nhttp2: off\n").http2 == "off"
    with pytest.raises(InvalidPlan) as err:
        plans.plan(plans.ONE_FLOW, http2=True)
    assert err.value.field == "http2"
    with pytest.raises(InvalidPlan):
        plans.plan(plans.ONE_FLOW, http2="on")


def test_h2c_is_for_http_targets_without_a_proxy():
    assert plans.plan(plans.ONE_FLOW, target="http://127.0.0.1:9", http2="h2c").http2 == "h2c"
    assert loader.loads("name: p\ntarget: http://a.test\nrate: 1\nduration: 1\n"
                        "requests: [{name: r}]\nhttp2: h2c\n").http2 == "h2c"
    for bad in ({"http2": "h2c"},  # https: HTTP/2 comes by ALPN there
                {"http2": "h2c", "target": "http://127.0.0.1:9", "proxy": "http://127.0.0.1:8"}):
        with pytest.raises(InvalidPlan) as err:
            plans.plan(plans.ONE_FLOW, **bad)
        assert err.value.field == "http2", bad


async def test_h2c_takes_http2_over_tcp_without_a_probe(monkeypatch):
    async def probe(*a, **k):
        raise AssertionError("no ALPN probe expected")

    monkeypatch.setattr(transport, "alpn", probe)
    p = plans.plan(plans.BASIC, target="http://127.0.0.1:9", http2="h2c")
    assert needs_users(p)  # a static plan too: the fast engine speaks HTTP/1.1 only
    t = await choose(p)
    assert isinstance(t, H2Pool) and t.protocol == "h2c" and t.ssl is None
    await t.close()


async def test_plain_http_and_http2_off_never_probe(monkeypatch):
    async def probe(*a, **k):
        raise AssertionError("no ALPN probe expected")

    monkeypatch.setattr(transport, "alpn", probe)
    for p in (plans.plan(plans.ONE_FLOW, target="http://127.0.0.1:9"), plans.plan(plans.ONE_FLOW, http2="off")):
        t = await choose(p)
        assert isinstance(t, Pool) and t.protocol == "http/1.1"
        await t.close()


async def test_a_proxy_or_redirects_stay_on_the_engines_own_pool():
    for p in (plans.plan(plans.ONE_FLOW, target="http://127.0.0.1:9", proxy="http://127.0.0.1:8"),
              plans.plan(plans.ONE_FLOW, target="http://127.0.0.1:9", follow_redirects=2)):
        t = await choose(p)
        assert isinstance(t, Pool)
        await t.close()


@pytest.mark.parametrize("picked, kind", [("h2", H2Pool), ("http/1.1", Pool), (None, Pool)])
async def test_https_auto_follows_what_the_target_picks_by_alpn(monkeypatch, picked, kind):
    async def probe(p, timeout_s):
        return picked

    monkeypatch.setattr(transport, "alpn", probe)
    t = await choose(plans.plan(plans.ONE_FLOW, insecure=True))
    assert type(t) is kind
    await t.close()


async def test_an_alpn_answer_handed_over_is_not_asked_again(monkeypatch):
    async def probe(p, timeout_s):
        raise AssertionError("asked again")

    monkeypatch.setattr(transport, "alpn", probe)
    t = await choose(plans.plan(plans.ONE_FLOW, insecure=True), transport.H2)
    assert type(t) is H2Pool
    await t.close()


async def test_a_failed_probe_falls_back_to_http1():
    t = await choose(plans.plan(plans.ONE_FLOW, target=f"https://127.0.0.1:{refused_port()}", timeout=1))
    assert isinstance(t, Pool)
    await t.close()


async def test_error_kinds_are_the_same_on_both_transports():
    from services.generator.client import TooManyRedirects
    from services.generator.pool import Reset, ResponseTooLarge

    h1 = Pool.classify
    h2 = H2Pool(plans.plan(plans.ONE_FLOW, insecure=True), transport.ssl_context(
        plans.plan(plans.ONE_FLOW, insecure=True)))
    try:
        for c in (h1, h2.classify):
            assert c(asyncio.TimeoutError()) == c(TimeoutError()) == "timeout"
            assert c(ConnectionRefusedError(111, "refused")) == "connect"
            assert c(Reset("gone")) == c(ConnectionResetError()) == "reset"
            assert c(ValueError("x")) == c(TooManyRedirects("x")) == "other"
            assert c(ResponseTooLarge("x")) == "too_large"
    finally:
        await h2.close()


async def test_http2_users_keep_their_own_cookie_jars():
    t = H2Pool(plans.plan(plans.ONE_FLOW, insecure=True),
               transport.ssl_context(plans.plan(plans.ONE_FLOW, insecure=True)))
    a, b = t.client(), t.client()
    try:
        a.set_cookies({"sid": "a"}, "https://127.0.0.1:9")
        assert a.cookies() == {"sid": "a"} and b.cookies() == {}
        a.clear_cookies()
        assert a.cookies() == {}
    finally:
        await t.close()
