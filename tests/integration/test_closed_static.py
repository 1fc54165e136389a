"""A static plan's closed model (``users``/``user_stages``) through the real stack.

Real nats-server, coordinator and generators as processes; the target is an asyncio
server in this test on 127.0.0.1 that records, per generator (``X-Surge-Generator``),
every request and every connection, when each request came and how many connections
were open at each moment. Each user is one keep-alive connection of the fast path
(``closed.ClosedLoop``), so the server sees exactly the plan's users as connections,
split by generator; a ramp shows in its open connections; the report's counts are
what it received, and nothing is sent after the run's end.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cluster, api_with, one_seconds_count, until
from tests.servers import RawServer

pytestmark = pytest.mark.timeout(90)

SERVICE_S = 0.01  # the server's time per request: 100 requests/s per user, bounded load
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
END_SLACK_S = 0.25  # a request sent just before the end, read by a loaded server later


class Recording(RawServer):
    """Answers every request after ``SERVICE_S``; records who sent what, when, on which connection."""

    def __init__(self) -> None:
        super().__init__(self._serve)
        self.requests: list[tuple[float, str]] = []  # (wall time, generator)
        self.ids: set[bytes] = set()  # X-Id values seen
        self.conns_by_generator: dict[str, int] = {}
        self.closed: list[tuple[float, str]] = []  # (wall time, generator) of each connection's end
        self.open = 0
        self.opened: list[tuple[float, int]] = []  # (wall time, connections open from then)

    def _moved(self, by: int) -> None:
        self.open += by
        self.opened.append((time.time(), self.open))

    async def _serve(self, _, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._moved(+1)
        first, gen = True, ""
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                gen = ""
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"x-surge-generator:"):
                        gen = line.split(b":", 1)[1].strip().decode()
                    elif line.lower().startswith(b"x-id:"):
                        self.ids.add(line.split(b":", 1)[1].strip())
                self.requests.append((time.time(), gen))
                if first:
                    self.conns_by_generator[gen] = self.conns_by_generator.get(gen, 0) + 1
                    first = False
                await asyncio.sleep(SERVICE_S)  # the server's service time, not a wait for an event
                writer.write(RESPONSE)
        finally:
            self._moved(-1)
            self.closed.append((time.time(), gen))

    def open_at(self, t: float) -> int:
        """Connections open at wall time ``t``."""
        n = 0
        for at, count in self.opened:
            if at > t:
                break
            n = count
        return n

    def per_second(self, start: float) -> dict[int, int]:
        out: dict[int, int] = {}
        for at, _ in self.requests:
            k = int((at - start) // 1)
            out[k] = out.get(k, 0) + 1
        return out


async def run(cluster: Cluster, tmp: Path, plan: dict) -> dict:
    path = tmp / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    report = tmp / "report.json"
    done = await asyncio.to_thread(cluster.cli, "run", str(path), "--quiet", "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(report.read_text())


def same_counts(report: dict, srv: Recording) -> None:
    """Every request the report counts is one the server received, second by second too."""
    assert report["model"] == "closed" and report["totals"]["errors"] == 0, report["totals"]
    assert report["target_rps"] == 0 and all(e["target_rps"] == 0 for e in report["timeline"])
    assert report["totals"]["requests"] == len(srv.requests) > 0
    seen = srv.per_second(report["started_at"])
    for entry in report["timeline"]:
        assert entry["requests"] == one_seconds_count(seen.get(entry["t"], 0), entry["p99_ms"]), (
            entry, seen)
    assert sum(seen.values()) == sum(e["requests"] for e in report["timeline"])


async def test_a_static_closed_plan_is_one_connection_per_user_split_between_generators(
        cluster: Cluster, tmp_path):
    cluster.coordinator()
    cluster.generator()
    cluster.generator()
    api = await api_with(cluster, 2)
    await api.close()
    async with Recording() as srv:
        report = await run(cluster, tmp_path, {
            "name": "closed-static", "target": srv.url, "users": 5, "duration": "3s", "timeout": "2s",
            "requests": [{"name": "get", "path": "/", "headers": {"X-Id": "{{$uuid}}"}}]})
    same_counts(report, srv)
    assert len(srv.ids) == len(srv.requests)  # a template renders per request in the closed loop too
    # 5 users over 2 generators: 2 and 3, each user its own connection for the whole run
    assert sorted(srv.conns_by_generator.values()) == [2, 3], srv.conns_by_generator
    assert set(srv.conns_by_generator) == set(report["generators"])
    for gid, totals in report["generators"].items():
        assert totals["requests"] == sum(1 for _, g in srv.requests if g == gid), gid
    # no request after the run's end, and the users ran until it
    start, end = report["started_at"], report["started_at"] + 3.0
    first, last = srv.requests[0][0], srv.requests[-1][0]
    assert start - 0.05 <= first < start + 1.0 and end - 0.5 < last < end + END_SLACK_S, (
        first - start, last - start)


async def test_user_stages_ramp_the_connections_of_two_engine_processes(cluster: Cluster, tmp_path):
    cluster.coordinator()
    cluster.generator(SURGE_WORKERS="2")
    api = await api_with(cluster, 1)
    await api.close()
    async with Recording() as srv:
        report = await run(cluster, tmp_path, {
            "name": "closed-ramp", "target": srv.url, "timeout": "2s",
            "user_stages": [{"duration": "1.5s", "target": 6}, {"duration": "1s", "target": 6},
                            {"duration": "1.5s", "target": 0}],
            "requests": [{"name": "get", "path": "/"}]})
    same_counts(report, srv)
    start = report["started_at"]
    # 6 users at the top, split 3 + 3 between the engines, each user one connection
    assert srv.conns_by_generator == {"gen-1": 6}
    assert max(count for _, count in srv.opened) == 6
    reached = next(at for at, count in srv.opened if count == 6) - start
    # int(users) is 6 from 1.5 s on (5 from 1.25 s): up, not all at once
    assert reached > 1.2, reached
    assert srv.open_at(start + 0.6) <= 3  # 2.4 users
    # and down again: users retire after their response, closing their connections
    assert srv.open_at(start + 3.6) <= 3  # 1.6 users
    assert srv.requests[-1][0] < start + 4.0 + END_SLACK_S


async def test_a_generator_joining_takes_its_part_of_the_users_from_the_others(cluster: Cluster, tmp_path):
    cluster.coordinator()
    cluster.generator()
    api = await api_with(cluster, 1)
    async with Recording() as srv:
        running = asyncio.create_task(run(cluster, tmp_path, {
            "name": "closed-join", "target": srv.url, "users": 4, "duration": "8s", "timeout": "2s",
            "requests": [{"name": "get", "path": "/"}]}))
        await until(lambda: srv.conns_by_generator.get("gen-1") == 4, 15, "gen-1's 4 users")
        cluster.generator()  # hot add (a process starting: seconds on a loaded box): 2 users each
        report = await running
    await api.close()
    same_counts(report, srv)
    assert any("joined" in e for e in report["events"]), report["events"]
    # gen-2 opened a connection for each of its 2 users; 2 of gen-1's retired (their
    # connections closed after a response, before the run's end), the other 2 ran on
    assert srv.conns_by_generator == {"gen-1": 4, "gen-2": 2}
    end = report["started_at"] + 8.0
    retired = [at for at, gen in srv.closed if gen == "gen-1" and at < end - 0.2]
    assert len(retired) == 2, (retired, end)
    for gid, totals in report["generators"].items():
        assert totals["requests"] == sum(1 for _, g in srv.requests if g == gid), gid
