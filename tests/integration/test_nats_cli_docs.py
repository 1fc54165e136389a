"""docs/nats-cli.md cannot go stale: every `nats …` line in it is replayed here.

The stock `nats` CLI is not installable on this machine, so each documented command is
translated into the exact NATS operation the CLI performs (the same subject, the same
raw JSON payload, the services-API and JetStream calls behind `nats micro`/`kv`/`object`)
and run in the order the page gives, against a real stack. A line that ends in
`# error: <code>` must get that structured error; every other request must succeed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex

import msgspec
import nats
import pytest

from schemas import subjects
from schemas.api import API_ENDPOINTS, BY_SUBJECT
from tests.conftest import ROOT, Cluster, api_with, until

pytestmark = pytest.mark.timeout(90)

DOC = ROOT / "docs" / "nats-cli.md"
_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
_PLAN_BLOCK = re.compile(r"<!-- plan.json -->\n```json\n(.*?)^```", re.S | re.M)
_EXPECT_ERROR = re.compile(r"#\s*error:\s*([a-z_]+)\s*$")


def documented_commands(text: str) -> list[tuple[list[str], str | None]]:
    """(argv, expected error code or None) for every `nats` line in the sh blocks."""
    commands = []
    for block in _SH_BLOCK.findall(text):
        for line in block.splitlines():
            if not line.startswith("nats "):
                continue
            m = _EXPECT_ERROR.search(line)
            commands.append((shlex.split(line, comments=True), m.group(1) if m else None))
    return commands


def test_the_page_documents_every_api_subject():
    text = DOC.read_text()
    subjects_used = {argv[2] for argv, _ in documented_commands(text) if argv[1] == "req"}
    missing = set(API_ENDPOINTS.values()) - subjects_used
    assert not missing, f"docs/nats-cli.md shows no `nats req` for {sorted(missing)}"
    # the errors the page promises are the ones the API table declares
    for argv, error in documented_commands(text):
        if argv[1] == "req" and error is not None:
            assert BY_SUBJECT[argv[2]].may_answer(error), (argv[2], error)
    assert len(documented_commands(text)) >= 20


class Replay:
    """Runs documented `nats` commands with nats-py, the way the CLI would."""

    def __init__(self, nc, plan_json: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.vars = {"$(cat plan.json)": plan_json}
        self.done: list[str] = []

    def expand(self, word: str) -> str:
        for name, value in self.vars.items():
            word = word.replace(name, value)
        return word

    async def run(self, argv: list[str], error: str | None) -> None:
        args = [self.expand(a) for a in argv[1:]]
        verb = " ".join(args[:2]) if args[0] in ("micro", "kv", "object") else args[0]
        handler = {
            "req": self.req, "sub": self.sub,
            "micro ls": self.micro_ls, "micro info": self.micro_info,
            "micro stats": self.micro_stats,
            "kv ls": self.kv_ls, "kv get": self.kv_get, "kv watch": self.kv_watch,
            "object get": self.object_get, "object ls": self.object_ls,
        }.get(verb)
        assert handler is not None, f"no replay for documented command: {' '.join(argv)}"
        rest = args[1:] if verb in ("req", "sub") else args[2:]
        if verb == "req":
            await self.req(*rest[:2], error=error)
        else:
            assert error is None, f"only requests can expect errors: {argv}"
            await handler(*rest)
        self.done.append(" ".join(argv))

    async def req(self, subject: str, payload: str, error: str | None) -> None:
        async def answer():
            msg = await self.nc.request(subject, payload.encode(), timeout=5)
            code = (msg.headers or {}).get("Nats-Service-Error-Code")
            # report.get answers `conflict` until the run has ended: ask again until then
            waiting = code == "409" and subject == subjects.REPORT_GET and error is None
            # test.run right after a run: its generators may still be winding down
            waiting = waiting or (code == "503" and subject == subjects.TEST_RUN and error is None)
            return None if waiting else (msg, code)

        msg, code = await until(answer, 30, f"an answer on {subject}", every_s=0.1)
        body = json.loads(msg.data)
        if error is not None:
            assert code, f"{subject} {payload!r} should have failed with {error}"
            assert body["error"]["code"] == error, body
            assert body["error"]["message"]
            return
        assert not code, f"{subject} {payload!r} failed: {body}"
        msgspec.json.decode(msg.data, type=BY_SUBJECT[subject].reply)  # the table's reply
        if subject == subjects.RUN_START:
            self.vars["$RUN"] = body["run_id"]
        if subject == subjects.REPORT_GET:
            assert body["run_id"] == self.vars["$RUN"] and body["totals"]["requests"] > 0

    async def sub(self, subject: str) -> None:
        got: asyncio.Future = asyncio.get_running_loop().create_future()

        async def first(msg) -> None:
            if not got.done():
                got.set_result(msg)

        sub = await self.nc.subscribe(subject, cb=first)
        try:
            msg = await asyncio.wait_for(got, 10)
        finally:
            await sub.unsubscribe()
        assert json.loads(msg.data)["run_id"] == self.vars["$RUN"]

    async def micro_ls(self) -> None:
        inbox = self.nc.new_inbox()
        names: set[str] = set()
        seen = asyncio.Event()

        async def pong(msg) -> None:
            names.add(json.loads(msg.data)["name"])
            if subjects.COORDINATOR_SERVICE in names and subjects.GENERATOR_SERVICE in names:
                seen.set()

        sub = await self.nc.subscribe(inbox, cb=pong)
        await self.nc.publish("$SRV.PING", b"", reply=inbox)
        try:
            await asyncio.wait_for(seen.wait(), 5)
        finally:
            await sub.unsubscribe()

    async def micro_info(self, name: str) -> None:
        info = json.loads((await self.nc.request(f"$SRV.INFO.{name}", b"", timeout=5)).data)
        served = {e["subject"] for e in info["endpoints"]}
        assert set(API_ENDPOINTS.values()) <= served, served

    async def micro_stats(self, name: str) -> None:
        stats = json.loads((await self.nc.request(f"$SRV.STATS.{name}", b"", timeout=5)).data)
        assert sum(e["num_requests"] for e in stats["endpoints"]) > 0, stats

    async def kv_ls(self, bucket: str) -> None:
        assert await (await self.js.key_value(bucket)).keys()

    async def kv_get(self, bucket: str, key: str) -> None:
        entry = await (await self.js.key_value(bucket)).get(key)
        assert json.loads(entry.value)

    async def kv_watch(self, bucket: str) -> None:
        watcher = await (await self.js.key_value(bucket)).watchall()
        try:
            entry = await watcher.updates(timeout=5)
            assert entry is not None and json.loads(entry.value)
        finally:
            await watcher.stop()

    async def object_get(self, bucket: str, name: str, *options: str) -> None:
        assert list(options[:1]) in ([], ["--output"]), options
        result = await (await self.js.object_store(bucket)).get(name)
        assert json.loads(result.data)["run_id"] == name

    async def object_ls(self, bucket: str) -> None:
        names = {info.name for info in await (await self.js.object_store(bucket)).list()}
        assert self.vars["$RUN"] in names


async def test_every_documented_command_works_against_a_real_stack(cluster: Cluster):
    text = DOC.read_text()
    _, target = cluster.target()
    cluster.coordinator()
    cluster.generator()
    cluster.generator()
    api = await api_with(cluster, 2)
    await api.close()

    plan = json.loads(_PLAN_BLOCK.search(text).group(1))
    assert plan["target"] == "http://127.0.0.1:8080"
    plan["target"] = target
    nc = await nats.connect(cluster.url)
    try:
        replay = Replay(nc, json.dumps(plan))
        for argv, error in documented_commands(text):
            await replay.run(argv, error)
        assert len(replay.done) == len(documented_commands(text))
    finally:
        await nc.drain()
