"""HTTP/2 in flows, end to end: ALPN picks h2 where the target offers it, else HTTP/1.1.

Real nats-server, coordinator, a generator and the demo target over TLS with a
self-signed certificate: once with ``SURGE_TARGET_HTTP2=1`` (it offers ``h2`` and
``http/1.1`` by ALPN and counts the requests each protocol brought in ``/__stats``),
once HTTP/1.1 only. The flow logs in (token by JSONPath, ``sid`` cookie), then calls
``/api/me``, which answers 200 only to the token *and* the cookie of the same login,
so every 200 proves extraction and the user's cookie jar worked on that transport.
And h2c: ``http2: h2c`` against the plain demo target with ``SURGE_TARGET_HTTP2=1``
(HTTP/2 by prior knowledge beside HTTP/1.1 on one port) arrives over h2, without TLS.
"""

from __future__ import annotations

import json
import shutil
import ssl
import urllib.request

import pytest

from tests.conftest import Cluster, target_stats
from tests.integration.test_scenarios import run_plan, self_signed, stack_ready
from tests.plans import SHOP_FLOW, raw

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a test certificate"),
]

RATE, SECONDS = 10, 2
ARRIVALS = RATE * SECONDS


def tls_stats(url: str) -> dict:
    """The target's /__stats over https with the self-signed certificate (not counted)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(f"{url}/__stats", timeout=5, context=ctx) as resp:
        return json.loads(resp.read())


def assert_all_ok(report: dict) -> list[int]:
    """No errors; each arrival's flow logged in (or was dropped). A flow still running when
    the run ends stops before its next step (docs/engine.md, "The end of a run"), so on a
    loaded machine the last flows may not reach the cart (15 of 20 seen): each step has at
    most its previous step's count. The counts (login, me, cart), for the server's."""
    reqs = report["requests"]
    assert set(reqs) == {"login", "me", "cart"}, reqs
    for name, r in reqs.items():
        assert r["errors"] == 0, (name, r)
    counts = [reqs[name]["requests"] for name in ("login", "me", "cart")]
    assert counts[0] + reqs["login"]["dropped"] == ARRIVALS, reqs["login"]
    assert counts == sorted(counts, reverse=True) and counts[-1] >= ARRIVALS // 2, counts
    return counts


def by_path(counts: list[int]) -> dict[str, int]:
    return {"/login": counts[0], "/api/me": counts[1], "/api/cart": counts[2]}


async def https_stack(cluster: Cluster, tmp_path, **target_env: str) -> str:
    cert, key = self_signed(tmp_path)
    _, url = cluster.target(SURGE_TARGET_TLS_CERT=cert, SURGE_TARGET_TLS_KEY=key, **target_env)
    cluster.coordinator()
    cluster.generator()
    await stack_ready(cluster, 1)
    return url.replace("http://", "https://")


async def test_flow_speaks_http2_where_the_target_offers_h2(cluster: Cluster, tmp_path):
    target = await https_stack(cluster, tmp_path, SURGE_TARGET_HTTP2="1")
    code, report = await run_plan(cluster, tmp_path, raw(SHOP_FLOW, target, rate=RATE, duration=f"{SECONDS}s"))
    assert code == 0, report["totals"]
    counts = assert_all_ok(report)
    seen = tls_stats(target)
    # every request of the run came over HTTP/2: the login, and the token + cookie reused
    assert seen["by_protocol"] == {"h2": sum(counts), "http/1.1": 0}, seen
    assert seen["by_path"] == by_path(counts)
    assert "protocol=h2" in cluster.procs[-1].output()  # the generator says what it chose

    # the same target with http2: off gets HTTP/1.1 only
    code, report = await run_plan(cluster, tmp_path, raw(SHOP_FLOW, target, rate=RATE, duration=f"{SECONDS}s", http2="off"), "off.yaml")
    assert code == 0, report["totals"]
    off = assert_all_ok(report)
    assert tls_stats(target)["by_protocol"] == {"h2": sum(counts), "http/1.1": sum(off)}


async def test_flow_falls_back_to_http1_where_tls_offers_no_h2(cluster: Cluster, tmp_path):
    target = await https_stack(cluster, tmp_path)  # the demo target's plain TLS: HTTP/1.1 only
    code, report = await run_plan(cluster, tmp_path, raw(SHOP_FLOW, target, rate=RATE, duration=f"{SECONDS}s"))
    assert code == 0, report["totals"]
    counts = assert_all_ok(report)
    seen = tls_stats(target)
    assert seen["by_protocol"] == {"h2": 0, "http/1.1": sum(counts)}, seen
    gen_log = cluster.procs[-1].output()
    assert "protocol=http/1.1" in gen_log and "protocol=h2" not in gen_log


async def test_flow_speaks_h2c_by_prior_knowledge(cluster: Cluster, tmp_path):
    _, target = cluster.target(SURGE_TARGET_HTTP2="1")  # plain TCP: h2c and HTTP/1.1 on one port
    cluster.coordinator()
    cluster.generator()
    await stack_ready(cluster, 1)
    code, report = await run_plan(cluster, tmp_path, raw(SHOP_FLOW, target, rate=RATE, duration=f"{SECONDS}s",
                                                         http2="h2c"))
    assert code == 0, report["totals"]
    counts = assert_all_ok(report)
    seen = target_stats(target)
    # every request (the login, the token and cookie reused) came as HTTP/2 frames over TCP
    assert seen["by_protocol"] == {"h2": sum(counts), "http/1.1": 0}, seen
    assert seen["by_path"] == by_path(counts)
    assert "protocol=h2c" in cluster.procs[-1].output()

    # the same http:// target with the default (auto) gets HTTP/1.1: h2c is asked for, never guessed
    code, report = await run_plan(cluster, tmp_path, raw(SHOP_FLOW, target, rate=RATE, duration=f"{SECONDS}s"),
                                  "auto.yaml")
    assert code == 0, report["totals"]
    auto = assert_all_ok(report)
    assert target_stats(target)["by_protocol"] == {"h2": sum(counts), "http/1.1": sum(auto)}
