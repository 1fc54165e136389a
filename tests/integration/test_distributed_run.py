"""A distributed run end to end: real nats-server, coordinator, generators, target.

Every test starts its own cluster (own nats-server on a free port), so no test
hears another; load goes only to the demo target on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import time

import msgspec
import pytest

from schemas import subjects
from schemas.api import API_ENDPOINTS, BY_NAME
from schemas.control import Assignment, PlanValid
from schemas.errors import InvalidPlan, NoGenerators
from schemas.stats import IntervalStats, LiveSnapshot, Report
from services.common.client import CoordinatorClient
from services.plan import profile
from services.plan import loader
from tests.conftest import LATE_BOUNDARY_S, Cluster, api_with, one_seconds_count, target_stats, until
from tests.events import Changes
from tests.plans import CHECKED, raw

pytestmark = pytest.mark.timeout(90)


async def stack(cluster: Cluster, generators: int) -> tuple[str, CoordinatorClient]:
    """Target, coordinator and ``generators`` generators; returns (target URL, API client)."""
    _, target = cluster.target()
    cluster.coordinator()
    for _ in range(generators):
        cluster.generator()
    return target, await api_with(cluster, generators)


class LiveFeed:
    """Every snapshot of one run, as the coordinator publishes them."""

    def __init__(self) -> None:
        self.snaps: list[LiveSnapshot] = []
        self.ended = asyncio.Event()
        self.new = asyncio.Event()

    async def attach(self, nc, run_id: str) -> None:
        async def on_msg(msg) -> None:
            snap = msgspec.json.decode(msg.data, type=LiveSnapshot)
            if snap.final:
                self.ended.set()
            else:
                self.snaps.append(snap)
            self.new.set()

        self.sub = await nc.subscribe(subjects.live(run_id), cb=on_msg)

    def p99s_around(self, snap: LiveSnapshot) -> list[float | None]:
        """The p99 latencies of ``snap``'s second and the one before: how late what crossed
        its boundaries may have been (``one_seconds_count``)."""
        return [s.p99_ms for s in self.snaps if s.seq in (snap.seq - 1, snap.seq)]

    async def wait_for(self, pred, limit_s: float, what: str) -> LiveSnapshot:
        deadline = time.monotonic() + limit_s
        while True:
            for s in self.snaps:
                if pred(s):
                    return s
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no snapshot with {what} in {limit_s}s")
            self.new.clear()
            try:
                await asyncio.wait_for(self.new.wait(), remaining)
            except TimeoutError:
                pass


async def start_and_follow(api: CoordinatorClient, plan: dict):
    feed = LiveFeed()
    started = await api.start(loader.from_obj(plan))
    await feed.attach(api.nc, started.run_id)
    return started, feed


async def finished_report(api: CoordinatorClient, feed: LiveFeed, run_id: str, limit_s: float = 30) -> Report:
    await asyncio.wait_for(feed.ended.wait(), limit_s)
    return await api.report(run_id)


async def test_constant_rate_count_within_one_percent_split_by_share(cluster: Cluster):
    target, api = await stack(cluster, 2)
    started, feed = await start_and_follow(api, raw(CHECKED, target, rate=300, duration="5s"))
    assert sorted(started.generators.values()) == [0.5, 0.5]
    report = await finished_report(api, feed, started.run_id)

    expected = 300 * 5
    assert report.state == "finished"
    # the schedule's count is exact: every arrival is answered or dropped, none is lost
    assert report.totals.requests + report.totals.dropped == expected, report.totals
    assert abs(report.totals.requests - expected) <= expected * 0.01, report.totals
    assert report.totals.errors == 0, report.totals.error_kinds
    assert target_stats(target)["requests"] == report.totals.requests
    per_gen = [g.requests for g in report.generators.values()]
    assert len(per_gen) == 2 and all(abs(n - expected / 2) <= expected * 0.01 for n in per_gen)
    # weights 3:1 hold across the run
    assert report.requests["home"].requests == pytest.approx(expected * 0.75, rel=0.02)
    assert report.requests["order"].requests == pytest.approx(expected * 0.25, rel=0.05)
    # exact merge: the whole-run histogram holds every request
    from services.common import histogram

    assert histogram.decode(report.histogram).get_total_count() == report.totals.requests
    assert [e.t for e in report.timeline] == [0, 1, 2, 3, 4]
    assert sum(e.requests for e in report.timeline) == report.totals.requests
    for before, entry in zip([None, *report.timeline], report.timeline):
        assert entry.target_rps == 300  # the schedule's, exact
        # the generators' clocks': a second's latency says how much crossed its boundaries
        assert entry.requests == one_seconds_count(300, entry.p99_ms, before and before.p99_ms), report.timeline
    assert report.verdict == "pass"
    await api.close()


async def test_ramp_per_second_counts_follow_the_stages(cluster: Cluster):
    target, api = await stack(cluster, 2)
    stages = [{"duration": "2s", "target": 400}, {"duration": "2s", "target": 400},
              {"duration": "2s", "target": 100}]
    plan = raw(CHECKED, target, rate=None, duration=None, stages=stages)
    started, feed = await start_and_follow(api, plan)
    report = await finished_report(api, feed, started.run_id)
    prof = profile.from_plan(loader.from_obj(plan))
    for before, entry in zip([None, *report.timeline], report.timeline):
        want = profile.arrivals(prof, entry.t, entry.t + 1)
        assert entry.target_rps == pytest.approx(want, abs=0.01)  # the schedule's, exact
        # the generators' clocks': as one_seconds_count, at the faster of the second's two
        # ends (a ramp's differ)
        p99_ms = max(entry.p99_ms or 0, (before.p99_ms or 0) if before else 0)
        lag_s = LATE_BOUNDARY_S + p99_ms / 1000
        moved = lag_s * max(profile.rate_at(prof, entry.t), profile.rate_at(prof, entry.t + 1))
        assert entry.requests == pytest.approx(want, abs=max(3, moved)), (entry, want)
    total = profile.arrivals(prof, 0, 6)
    assert report.totals.requests + report.totals.dropped == pytest.approx(total, abs=0.01)
    assert report.totals.requests == pytest.approx(total, rel=0.01)
    await api.close()


async def test_live_rate_change_applies_within_a_second(cluster: Cluster):
    target, api = await stack(cluster, 2)
    started, feed = await start_and_follow(api, raw(CHECKED, target, rate=100, duration="8s"))
    changes: dict[str, list] = {}  # what each generator's intervals say it took up
    heard = Changes()

    async def on_interval(msg) -> None:
        stats = msgspec.json.decode(msg.data, type=IntervalStats)
        changes.setdefault(stats.generator_id, []).extend(stats.changes)
        heard.changed()

    await api.nc.subscribe(subjects.stats_of_run(started.run_id), cb=on_interval)
    first = await feed.wait_for(lambda s: s.seq >= 1, 10, "second 1")
    assert first.target_rps == 100 and first.rps == one_seconds_count(100, *feed.p99s_around(first))
    asked_at = time.time()
    ok = await api.rate(started.run_id, 300)
    changed_at = time.time()
    assert ok.epoch == 2
    # each generator reports when the new epoch reached it: after the coordinator's
    # write of its assignment (the NATS server's clock: the same host here)
    await heard.until(lambda: len(changes) == 2 and all(changes.values()), 10, "both generators' changes")
    for gid, taken in changes.items():
        assert [c.epoch for c in taken] == [2], (gid, taken)
        change = taken[0]
        assert change.written_at is not None
        assert asked_at - 0.05 <= change.written_at <= change.applied_at <= changed_at + 1.0, change
    snap = await feed.wait_for(lambda s: s.target_rps == pytest.approx(300), 10, "target 300")
    # the first whole second after the change runs at the new rate
    assert snap.at - changed_at <= 1.0
    after = await feed.wait_for(lambda s: s.seq == snap.seq + 1, 5, "the next second")
    assert after.rps == one_seconds_count(300, *feed.p99s_around(after))
    report = await finished_report(api, feed, started.run_id)
    assert any("rate changed to 300" in e for e in report.events)
    # the coordinator heard both take it up, and says how long that took
    assert any("rate change applied by 2 generators within" in e for e in report.events), report.events
    record = await api.get(started.run_id)
    assert record.target_rps == 300 and record.state == "finished"
    await api.close()


async def test_stop_ends_the_run_early_with_a_stopped_report(cluster: Cluster):
    target, api = await stack(cluster, 1)
    started, feed = await start_and_follow(api, raw(CHECKED, target, rate=100, duration="60s"))
    await feed.wait_for(lambda s: s.seq >= 1, 10, "second 1")
    asked_at = time.time()
    await api.stop(started.run_id)
    stopped_at = time.time()
    report = await finished_report(api, feed, started.run_id, limit_s=15)
    assert report.state == "stopped"
    assert time.time() - stopped_at < 8
    # every arrival due before the stop was asked for is answered or dropped (exact); the
    # generator stops when the stop reaches it, within a second as a rate change does (on
    # a loaded machine that may be more than the 200 ms a ±20 check allowed)
    sent = report.totals.requests + report.totals.dropped
    assert 100 * (asked_at - report.started_at) - 1 <= sent <= 100 * (stopped_at + 1.0 - report.started_at)
    assert report.totals.requests < 100 * 10
    with pytest.raises(Exception) as exc:
        await api.stop(started.run_id)
    assert getattr(exc.value, "code", "") == "conflict"
    await api.close()


async def test_generator_joining_mid_run_gets_a_share(cluster: Cluster):
    target, api = await stack(cluster, 1)
    started, feed = await start_and_follow(api, raw(CHECKED, target, rate=200, duration="8s"))
    await feed.wait_for(lambda s: s.seq >= 0, 10, "second 0")
    cluster.generator()
    snap = await feed.wait_for(
        lambda s: len([g for g in s.generators.values() if g.rps > 0]) == 2, 10, "two generators"
    )
    assert sum(g.target_rps for g in snap.generators.values()) == pytest.approx(200, abs=8)
    report = await finished_report(api, feed, started.run_id)
    assert len(report.generators) == 2
    assert report.totals.requests == pytest.approx(200 * 8, rel=0.01)
    assert any("joined" in e for e in report.events)
    await api.close()


async def test_killed_generator_share_moves_to_survivors_within_3s(cluster: Cluster):
    _, target = cluster.target()
    cluster.coordinator()
    victim = cluster.generator()
    cluster.generator()
    cluster.generator()
    api = await api_with(cluster, 3)
    started, feed = await start_and_follow(api, raw(CHECKED, target, rate=300, duration="10s"))
    assert len(started.generators) == 3
    await feed.wait_for(lambda s: s.seq >= 1, 10, "second 1")

    js = api.nc.jetstream()
    kv = await js.key_value(subjects.ASSIGN_BUCKET)
    survivors = {g for g in started.generators if g != victim.name}
    watcher = await kv.watchall()
    victim.kill()
    killed_at = time.time()  # it is dead: kill() waits for it
    taken_over: dict[str, float] = {}
    async for entry in watcher:
        if entry is None or entry.key not in survivors or not entry.value:
            continue
        a = msgspec.json.decode(entry.value, type=Assignment)
        if a.share == pytest.approx(0.5):
            # on the bus's clock: when the coordinator's write of the new share was stored,
            # not when this (loaded) test process got round to reading it
            taken_over[entry.key] = entry.created.timestamp() - killed_at
            if set(taken_over) == survivors:
                break
    await watcher.stop()
    print(f"share moved {max(taken_over.values()):.2f}s after the kill")
    # a kill just after a beat is the worst case: dead_after_s (2.2 s) from that beat, then
    # the bus's stamp, the tick and the write (docs/design.md, "Membership")
    assert max(taken_over.values()) <= 3.0, taken_over

    report = await finished_report(api, feed, started.run_id)
    assert any(f"{victim.name} lost" in e for e in report.events)
    assert any(entry.gap for entry in report.timeline)
    # the survivors carried the whole rate after the loss: only the victim's unsent
    # last interval and the detection window are missing
    assert report.totals.requests >= 300 * 10 * 0.85
    before, last = report.timeline[-3:-1]
    assert last.requests == one_seconds_count(300, last.p99_ms, before.p99_ms) and last.generators == 2
    await api.close()


async def test_slow_target_stalls_show_in_p99_not_in_service_time(cluster: Cluster):
    # the target holds every response for 200 ms once a second (a GC pause, say);
    # with one connection, arrivals queue behind the stall: the latency from their
    # intended time shows it, their service time does not
    _, target = cluster.target(SURGE_TARGET_STALL_EVERY_S="1", SURGE_TARGET_STALL_MS="200")
    cluster.coordinator()
    cluster.generator()
    api = await api_with(cluster, 1)
    plan = raw(CHECKED, target, rate=200, duration="5s", connections=1,
                    requests=[{"name": "home", "path": "/"}])
    started, feed = await start_and_follow(api, plan)
    report = await finished_report(api, feed, started.run_id)
    lat, svc = report.totals.latency_ms, report.totals.service_time_ms
    assert lat is not None and svc is not None
    assert lat.p99 >= 120, lat
    assert svc.p99 < 40, svc
    assert lat.p50 < 60, lat
    assert report.totals.late > 0
    assert report.totals.requests == pytest.approx(1000, rel=0.01)
    await api.close()


async def test_cli_run_exit_codes_follow_the_verdict(cluster: Cluster, tmp_path):
    target, api = await stack(cluster, 1)
    await api.close()
    passing = tmp_path / "pass.yaml"
    passing.write_text(json.dumps(raw(CHECKED, target, rate=100, duration="2s",
                                           thresholds={"p99_ms": 1000, "error_rate": 0.01})))
    out_json, out_xml, out_html = tmp_path / "report.json", tmp_path / "junit.xml", tmp_path / "report.html"
    done = await asyncio.to_thread(
        cluster.cli, "run", str(passing), "--report", str(out_json), "--junit", str(out_xml), "--html", str(out_html)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout
    report = json.loads(out_json.read_text())
    for key in ("run_id", "plan_name", "state", "started_at", "ended_at", "target_rps", "totals",
                "requests", "generators", "timeline", "thresholds", "verdict", "histogram"):
        assert key in report, key
    for key in ("requests", "errors", "error_rate", "achieved_rps", "late", "dropped",
                "latency_ms", "service_time_ms"):
        assert key in report["totals"], key
    assert set(report["totals"]["latency_ms"]) >= {"min", "mean", "p50", "p90", "p95", "p99", "p999", "max"}
    assert report["verdict"] == "pass"
    assert "<testsuite" in out_xml.read_text() and "<failure" not in out_xml.read_text()
    page = out_html.read_text()  # the same report, for people: verdict, run, a line per request, charts
    assert page.startswith("<!doctype html>") and "<script" not in page
    # throughput, latency and the generators' own CPU (the report's hosts section)
    assert "PASS" in page and report["run_id"] in page and page.count("<svg") == 3
    assert [g["generator_id"] for g in report["hosts"]["generators"]] == sorted(report["generators"])
    assert f"<td>{report['totals']['requests']:,}</td>" in page

    failing = tmp_path / "fail.yaml"
    # the whole run within its limit, one request over its own: the verdict fails
    failing.write_text(json.dumps(raw(CHECKED, target, rate=100, duration="2s", thresholds={
        "p99_ms": 1000, "requests": {"home": {"p99_ms": 1000}, "order": {"p99_ms": 0.001}}})))
    done = await asyncio.to_thread(
        cluster.cli, "run", str(failing), "--rate", "50", "--junit", str(out_xml), "--report", str(out_json)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout and "order: p99_ms" in done.stdout
    xml = out_xml.read_text()
    assert xml.count("<failure") == 1 and 'name="order: p99_ms"><failure message="order: p99_ms: value ' in xml
    assert '<testcase classname="it" name="home: p99_ms"/>' in xml
    results = json.loads(out_json.read_text())["thresholds"]
    assert [(t.get("request"), t["name"], t["ok"]) for t in results] == [
        (None, "p99_ms", True), ("home", "p99_ms", True), ("order", "p99_ms", False)]

    ls = await asyncio.to_thread(cluster.cli, "ls", "--json")
    runs = json.loads(ls.stdout)
    assert [r["verdict"] for r in runs] == ["fail", "pass"]
    assert runs[0]["target_rps"] == 50
    shown = await asyncio.to_thread(cluster.cli, "report", runs[1]["run_id"], "--json")
    assert json.loads(shown.stdout)["run_id"] == runs[1]["run_id"]
    again = tmp_path / "again.html"
    shown = await asyncio.to_thread(cluster.cli, "report", runs[0]["run_id"], "--html", str(again))
    assert shown.returncode == 1 and "FAIL" in again.read_text() and runs[0]["run_id"] in again.read_text()
    gens = await asyncio.to_thread(cluster.cli, "generators", "--json")
    assert [g["id"] for g in json.loads(gens.stdout)] == ["gen-1"]


async def test_abort_on_fail_stops_a_failing_run_early_and_lets_a_passing_one_finish(cluster: Cluster, tmp_path):
    target, api = await stack(cluster, 1)
    await api.close()
    failing = tmp_path / "abort.yaml"
    failing.write_text(json.dumps(raw(CHECKED, target, rate=100, duration="60s", thresholds={
        "p99_ms": 1000, "requests": {"order": {"p99_ms": 0.001}}, "abort_on_fail": True, "abort_after": "2s"})))
    out_json = tmp_path / "abort.json"
    t0 = time.monotonic()
    done = await asyncio.to_thread(cluster.cli, "run", str(failing), "--report", str(out_json))
    took = time.monotonic() - t0
    assert done.returncode == 1, done.stdout + done.stderr
    # judged from the 2nd second on; stopping waits out the plan's 2 s timeout and a grace
    assert took < 20, took
    report = json.loads(out_json.read_text())
    assert report["verdict"] == "fail" and report["state"] == "stopped"
    assert report["duration_s"] < 10, report["duration_s"]
    [why] = [e for e in report["events"] if "aborted" in e]
    assert "threshold order: p99_ms failed" in why and "over the first 2 s" in why, why
    assert "aborted: threshold order: p99_ms" in done.stdout

    passing = tmp_path / "fine.yaml"
    passing.write_text(json.dumps(raw(CHECKED, target, rate=100, duration="3s", thresholds={
        "p99_ms": 1000, "requests": {"order": {"p99_ms": 1000}}, "abort_on_fail": True, "abort_after": "1s"})))
    done = await asyncio.to_thread(cluster.cli, "run", str(passing), "--report", str(out_json))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out_json.read_text())
    assert report["state"] == "finished" and report["verdict"] == "pass"
    assert not [e for e in report["events"] if "aborted" in e]


async def test_invalid_plan_gets_a_structured_error_naming_the_field(cluster: Cluster, tmp_path):
    target, api = await stack(cluster, 1)
    bad = raw(CHECKED, target)
    bad["requests"][1]["method"] = "FETCH"
    msg = await api.nc.request(subjects.RUN_START, json.dumps(bad).encode(), timeout=5)
    assert msg.headers["Nats-Service-Error-Code"] == "400"
    err = json.loads(msg.data)["error"]
    assert err["code"] == "invalid_plan" and err["field"] == "requests.1.method"
    with pytest.raises(InvalidPlan) as exc:
        await api.call(subjects.PLAN_VALIDATE, json.dumps(bad).encode(), PlanValid)
    assert exc.value.field == "requests.1.method"
    outside = raw(CHECKED, "http://203.0.113.9:80")
    msg = await api.nc.request(subjects.RUN_START, json.dumps(outside).encode(), timeout=5)
    assert json.loads(msg.data)["error"]["code"] == "target_not_allowed"

    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntarget: " + target + "\nrate: -3\nduration: 2s\nrequests: [{name: a}]\n")
    for args in (("run", str(path)), ("validate", str(path))):
        done = await asyncio.to_thread(cluster.cli, *args)
        assert done.returncode == 2
        assert "invalid_plan" in done.stderr and "field: rate" in done.stderr
    await api.close()


async def test_no_generators_and_no_nats_exit_2(cluster: Cluster, tmp_path):
    _, target = cluster.target()
    cluster.coordinator()
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(raw(CHECKED, target)))
    api = await CoordinatorClient.connect(cluster.url)
    await until(lambda: _answers(api), 10, "coordinator answering")
    with pytest.raises(NoGenerators):
        await api.start(loader.from_obj(raw(CHECKED, target)))
    await api.close()
    done = await asyncio.to_thread(cluster.cli, "run", str(path))
    assert done.returncode == 2 and "no_generators" in done.stderr
    done = await asyncio.to_thread(
        lambda: cluster.cli("run", str(path), "--nats", "nats://127.0.0.1:1")
    )
    assert done.returncode == 2


async def _answers(api: CoordinatorClient) -> bool:
    try:
        await api.generators()
        return True
    except Exception:
        return False


GARBAGE = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"text"',
    b"\xff\xfe\x00garbage",
    b'{"run_id": 12}',
    b'{"run_id": "../../etc"}',
    b'{"run_id": "x", "rate": -5}',
    b'{"run_id": "x", "rate": 1e309}',
    b"[" * 5000 + b"]" * 5000,
    b'{"name": "' + b"a" * 1_000_000 + b'"}',
    b'{"requests": {"a": 1}}',
]


async def test_malformed_messages_on_every_api_subject_get_error_replies(cluster: Cluster):
    _, target = cluster.target()
    coordinator = cluster.coordinator()
    cluster.generator()
    api = await api_with(cluster, 1)
    nc = api.nc
    for name, subject in API_ENDPOINTS.items():
        for payload in GARBAGE:
            if BY_NAME[name].empty_ok and payload in (b"", b"null"):
                continue  # those take an empty request (the API table says which)
            msg = await nc.request(subject, payload, timeout=5)
            assert msg.headers and msg.headers.get("Nats-Service-Error-Code"), (subject, payload[:40])
            err = json.loads(msg.data)["error"]
            assert err["code"] in ("bad_request", "invalid_plan", "not_found", "conflict"), (subject, err)
    # interval stats from a stranger: refused with a reason, nothing counted
    for payload in GARBAGE[:8]:
        msg = await nc.request(subjects.stats("r1", "g1"), payload, timeout=5)
        assert msg.headers.get("Nats-Service-Error-Code")
    assert coordinator.alive()
    # and it still runs tests
    started, feed = await start_and_follow(api, raw(CHECKED, target, rate=100, duration="2s"))
    report = await finished_report(api, feed, started.run_id)
    assert report.totals.requests == pytest.approx(200, abs=2)
    await api.close()
