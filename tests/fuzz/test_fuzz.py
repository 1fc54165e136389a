"""Hostile input on every subject a service consumes, while a run is under way.

The corpus (tests/fuzz/corpus/ + the big cases of corpus.py + seeded mutations) goes to
every coordinator API subject, the stats intake, a generator's assignment key, the
registry, and the live subject. Each request must get a structured error (or, where the
input happens to be valid for a read-only endpoint, an answer); no service may crash or
grow without bound; the run under way must end with every request counted once.

SURGE_FUZZ_ROUNDS sets the number of mutations (make test: the default, bounded).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request

import psutil
import pytest

from schemas import subjects
from schemas.api import API_ENDPOINTS, BY_NAME, ENDPOINTS
from services.plan import loader
from tests.conftest import Cluster, api_with, beat_of, free_port, run_in, target_stats, until
from tests.fuzz import corpus
from tests.plans import CHECKED, raw

pytestmark = pytest.mark.timeout(90)

ROUNDS = int(os.environ.get("SURGE_FUZZ_ROUNDS", "30"))
# a fuzz case may be answered normally only where nothing changes (schemas/api.py says which)
READ_ONLY = {e.name for e in ENDPOINTS if e.read_only}


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def check_reply(where: str, name: str, msg) -> None:
    code = msg.headers.get("Nats-Service-Error-Code") if msg.headers else None
    if code:
        body = json.loads(msg.data)["error"]
        known = BY_NAME[where].may_answer(body["code"]) if where in BY_NAME else body["code"] in (
            "bad_request", "not_found", "conflict")
        assert known and isinstance(body["message"], str), (where, name, body)
        assert code in ("400", "403", "404", "409", "503"), (where, name, code)
    else:
        assert where in READ_ONLY, f"{where} accepted fuzz case {name}: {msg.data[:200]!r}"
        json.loads(msg.data)


async def test_fuzz_corpus_on_every_subject_gets_errors_and_leaves_the_run_whole(cluster: Cluster):
    _, target = cluster.target()
    coordinator = cluster.coordinator()
    gens = [cluster.generator() for _ in range(3)]
    # consumers of live snapshots: the monitor and the UI, fuzzed on surge.live.<run>
    ui_port = free_port()
    consumers = [
        cluster.service("monitor", SURGE_DATA_DIR=str(cluster.tmp / "monitor")),
        cluster.service("ui", SURGE_UI_PORT=str(ui_port)),
    ]
    api = await api_with(cluster, 3)
    await consumers[1].said("listening", 20)  # the UI listens once it has joined the bus
    nc = api.nc
    js = nc.jetstream()
    rate, duration = 200, 14
    started = await api.start(loader.from_obj(
        raw(CHECKED, target, rate=rate, duration=f"{duration}s", generators=2)
    ))
    run_id = started.run_id
    member = sorted(started.generators)[0]
    victim = next(g for g in gens if g.name not in started.generators)

    async def warm() -> bool:
        return target_stats(target)["requests"] >= rate

    await until(warm, 10, "a second of load")
    procs = [coordinator, *gens]
    rss_before = {p.name: rss_mb(p.pid) for p in procs}

    cases = list(corpus.cases(run_id, member, target))
    seeds = [data for name, data in cases if name in (
        "stranger-interval.json", "negative-heartbeat-capacity.json",
    )]
    seeds.append(json.dumps(raw(CHECKED, "http://203.0.113.9", generators=50)).encode())
    cases += list(corpus.mutations(seeds, ROUNDS))
    t0 = time.monotonic()

    async def api_and_stats_round() -> None:
        # 1. every API subject
        for endpoint, subject in API_ENDPOINTS.items():
            for name, data in cases:
                msg = await nc.request(subject, data, timeout=10)
                check_reply(endpoint, name, msg)
        # 2. the stats intake, aimed at the live run: from a member and from a stranger
        for gid in (member, "intruder"):
            for name, data in cases:
                msg = await nc.request(subjects.stats(run_id, gid), data, timeout=10)
                assert msg.headers and msg.headers.get("Nats-Service-Error-Code"), (gid, name)
                check_reply("stats", name, msg)

    # a leak grows with every round; the allocator's high-water mark only once
    await api_and_stats_round()
    rss_round1 = rss_mb(coordinator.pid)
    await api_and_stats_round()
    rss_round2 = rss_mb(coordinator.pid)
    print(f"coordinator RSS after fuzz round 1: {rss_round1:.0f} MB, round 2: {rss_round2:.0f} MB")
    assert rss_round2 - rss_round1 < 12, (rss_round1, rss_round2)

    # 3. the registry (what the coordinator consumes) and an idle generator's assignment
    registry = await js.key_value(subjects.GENERATORS_BUCKET)
    assign = await js.key_value(subjects.ASSIGN_BUCKET)
    for name, data in cases:
        await registry.put("fuzz-gen", data)
        await assign.put(victim.name, data)
    put_done = time.time()
    await registry.delete("fuzz-gen")

    # it re-read its key on a later heartbeat
    await beat_of(nc, victim.name, lambda beat: beat.sent_at > put_done + 1.0 and beat.state == "idle",
                  10, "the fuzzed generator beating, idle")
    await assign.delete(victim.name)

    # 4. live snapshots: what the UI, the CLI and the monitor consume
    for name, data in cases:
        await nc.publish(subjects.live(run_id), data)
    await nc.flush()
    print(f"fuzz: {len(cases)} cases on {len(API_ENDPOINTS) + 4} targets "
          f"in {time.monotonic() - t0:.1f}s")

    # the run under way was not disturbed
    record = await run_in(nc, run_id, limit_s=duration + 15)
    report = await api.report(run_id)
    received = target_stats(target)["requests"]
    assert record.state == "finished", record
    assert report.totals.requests == received
    assert abs(received - rate * duration) <= rate * duration * 0.01
    assert report.totals.errors == 0
    assert set(report.generators) == set(started.generators)
    assert all(p.alive() for p in procs + consumers), [p.name for p in procs if not p.alive()]
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/", timeout=5) as resp:
        assert resp.status == 200  # the UI still serves after the fuzzed live feed
    generators = (await api.generators()).generators
    assert sorted(g.id for g in generators) == sorted(g.name for g in gens)
    rss_after = {p.name: rss_mb(p.pid) for p in procs}
    print("RSS MB before/after:", {k: (round(rss_before[k]), round(rss_after[k])) for k in rss_after})
    for name, before in rss_before.items():
        assert rss_after[name] - before < 80, (name, before, rss_after[name])
    # every case was refused on purpose, not by an unexpected exception
    for p in procs + consumers:
        assert "Traceback" not in p.output(), p.name
    assert "bad assignment ignored" in victim.output()
    await api.close()
