"""Templated static plans run on the fast engine: a render per request, no virtual user.

The plan goes the generator's way (``load.engine_for`` on an assignment, then start,
drain), against a real HTTP server on 127.0.0.1 that records every request
(tests/recording.py); what the server received is the oracle: every request rendered
anew, the plan's vars in place, lengths right.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from schemas.control import Assignment
from services.generator.engine import Engine
from services.generator.load import engine_for
from services.generator.pacing import Schedule
from services.generator.workers import PooledEngine, WorkerPool
from tests import engines, plans
from tests.conftest import until
from tests.recording import RecordingServer

pytestmark = pytest.mark.timeout(60)

RATE, ARRIVALS = 40.0, 20


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    from services.cli.secure import make_certificates  # a local CA's certificate: not trusted

    files = make_certificates(tmp_path_factory.mktemp("tls"))
    return str(files.cert), str(files.key)


def assignment(url: str, **fields) -> Assignment:
    if url.startswith("https:"):  # HTTP/1.1 said outright: no ALPN probe, the fast engine
        fields = {"http2": "off", "insecure": True, **fields}
    plan = plans.plan(
        plans.ENGINE, url, name="templated", rate=RATE, timeout=2, connections=4, **fields,
        vars={"token": "tok-{{$randstr(6)}}"},
        headers={"Authorization": "Bearer {{token}}"},
        requests=[{"name": "order", "method": "POST", "path": "/orders/{{$randint(1,1000000000)}}",
                   "json": {"id": "{{$uuid}}", "qty": 1, "who": "{{token}}"},
                   "checks": {"status": 200}}],
    )
    return engines.assignment(plan, RATE, ARRIVALS, run_id="templated")


async def run(engine) -> int:
    iv = await engines.run_arrivals(engine, RATE, ARRIVALS)
    assert sum(iv.dropped) == 0 and not any(iv.errors)
    return iv.completed()


def received(srv: RecordingServer) -> tuple[set[str], set[str]]:
    """Every request as the server got it: (the tokens, the uuids), each checked whole."""
    got = srv.recorder.wait_for(ARRIVALS)
    assert len(got) == ARRIVALS
    tokens, ids, paths = set(), set(), set()
    for r in got:
        assert r.method == "POST" and r.target.startswith("/orders/")
        assert r.header("Content-Type") == "application/json"
        assert r.header("Content-Length") == str(len(r.body))
        doc = json.loads(r.body)
        assert doc["qty"] == 1 and len(doc["id"]) == 36
        assert r.header("Authorization") == f"Bearer {doc['who']}"
        tokens.add(doc["who"])
        ids.add(doc["id"])
        paths.add(r.target)
    assert len(ids) == ARRIVALS and len(paths) > ARRIVALS - 2  # rendered anew at every send
    return tokens, ids


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_templated_static_plan_runs_on_the_fast_engine_rendering_every_request(scheme, certificate):
    with RecordingServer(tls=certificate if scheme == "https" else None) as srv:
        assert srv.url.startswith(f"{scheme}://")
        engine = engine_for(assignment(srv.url), asyncio.get_running_loop())
        assert type(engine) is Engine
        assert await run(engine) == ARRIVALS
        tokens, _ = received(srv)
    (token,) = tokens  # vars render once per run, as in the flow engine
    assert token.startswith("tok-") and len(token) == 10


async def test_https_on_the_fast_engine_checks_the_certificate(certificate):
    with RecordingServer(tls=certificate) as srv:
        engine = engine_for(assignment(srv.url, insecure=False), asyncio.get_running_loop())
        assert type(engine) is Engine
        iv = await engines.run_arrivals(engine, RATE, ARRIVALS)
        # a certificate no CA of the system vouches for: every arrival a connect error
        assert iv.completed() == ARRIVALS and iv.errors[0] == {"connect": ARRIVALS}
        assert srv.recorder.take() == []


async def by_alpn_run(url: str) -> tuple[object, int]:
    """The plan at ``url`` with ``http2: auto`` through ``engine_for``: (the engine the
    target's ALPN answer chose, completed requests)."""
    from services.generator.load import ByAlpn

    engine = engine_for(assignment(url, http2="auto"), asyncio.get_running_loop())
    assert type(engine) is ByAlpn
    t0 = time.monotonic()
    engine.start(Schedule(engines.constant(RATE, ARRIVALS), 1.0), t0)
    await until(lambda: engine.inner is not None and engine.in_flight() == 0
                and time.monotonic() > t0 + ARRIVALS / RATE, 20, "every arrival answered")
    done = engine.take_interval().completed()
    await engine.drain(2.0)
    return engine.inner, done + engine.take_interval().completed()


async def test_https_with_http2_auto_and_an_http1_target_runs_on_the_fast_engine(certificate):
    with RecordingServer(tls=certificate) as srv:  # offers no ALPN protocol: HTTP/1.1
        inner, done = await by_alpn_run(srv.url)
        assert type(inner) is Engine and done == ARRIVALS
        received(srv)  # every request rendered anew, each once


async def test_https_with_http2_auto_and_an_h2_target_runs_virtual_users(tmp_path):
    from tests.servers import H2Server, tls_server_context

    async def answer(srv, stream):
        stream.send()

    async with H2Server(answer, tls_server_context(tmp_path, alpn=("h2",))) as srv:
        inner, done = await by_alpn_run(srv.url)
        assert type(inner) is Engine and inner.users is not None and done == ARRIVALS
        assert len(srv.received) == ARRIVALS
        # one TLS connection for the ALPN probe, one for the run: the flow engine was
        # handed the answer, it did not ask again
        assert srv.connections == 2


async def test_arrivals_of_a_run_that_ends_before_the_alpn_answer_are_accounted_for():
    """A target that takes the TCP connection and never answers the TLS handshake: the
    run (0.5 s) ends before the probe (2 s, the plan's timeout) does. Every arrival the
    plan intended is in the report, as an error or a drop, none lost."""
    async def silent(reader, writer):
        await reader.read()  # until the client goes

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        engine = engine_for(assignment(url, http2="auto"), asyncio.get_running_loop())
        t0 = time.monotonic()
        engine.start(Schedule(engines.constant(RATE, ARRIVALS), 1.0), t0)
        await asyncio.sleep(max(t0 + ARRIVALS / RATE - time.monotonic(), 0))  # the schedule's end: a measurement window
        engine.stop_pacing()
        await engine.gather()
        ivs = [engine.take_interval()]
        await engine.drain(1.0)
        ivs.append(engine.take_interval())
    finally:
        server.close()
    assert engine.inner is not None  # the fast engine, as after a failed probe
    accounted = sum(iv.completed() + sum(iv.dropped) for iv in ivs)
    assert accounted == ARRIVALS, [(iv.completed(), iv.errors, iv.dropped) for iv in ivs]


async def test_worker_processes_render_their_own_requests():
    pool = WorkerPool(2)
    await pool.start()
    await pool.ready()  # the worker imported and listening: the run starts together
    try:
        with RecordingServer() as srv:
            engine = engine_for(assignment(srv.url), asyncio.get_running_loop(), workers=pool)
            assert type(engine) is PooledEngine  # a fast engine here, one in the worker
            t0 = time.monotonic()
            engine.start(Schedule(engines.constant(RATE, ARRIVALS), 1.0), t0)
            await asyncio.to_thread(srv.recorder.wait_for, ARRIVALS, 20.0)
            await asyncio.sleep(max(t0 + ARRIVALS / RATE - time.monotonic(), 0))  # the schedule's end: a measurement window
            await engine.gather()
            await engine.drain(2.0)
            _, ids = received(srv)  # distinct across both processes: not one seed each
            assert len(ids) == ARRIVALS
    finally:
        await pool.close()


async def test_the_generator_service_runs_a_templated_https_plan_on_the_fast_engine(
        cluster, tmp_path, certificate):
    """The whole way: `surge run` → coordinator → a generator process, whose engine_for
    asks the target by ALPN (``http2: auto``, the default) and takes the fast engine."""
    from tests.integration.test_scenarios import run_plan, stack_ready

    cluster.coordinator()
    gen = cluster.generator()
    await stack_ready(cluster, 1)
    with RecordingServer(tls=certificate) as srv:
        plan = {"name": "templated-https", "target": srv.url, "insecure": True,
                "rate": RATE, "duration": f"{ARRIVALS / RATE:g}s", "timeout": "2s",
                "vars": {"token": "tok-{{$randstr(6)}}"},
                "headers": {"Authorization": "Bearer {{token}}"},
                "requests": [{"name": "order", "method": "POST",
                              "path": "/orders/{{$randint(1,1000000000)}}",
                              "json": {"id": "{{$uuid}}", "qty": 1, "who": "{{token}}"}}]}
        _, report = await run_plan(cluster, tmp_path, plan)
        assert report["totals"]["requests"] == ARRIVALS and report["totals"]["errors"] == 0, report["totals"]
        received(srv)
    log = gen.output()
    assert "engine chosen by ALPN" in log and "engine=Engine" in log, log[-2000:]
