"""The test catalogue on the coordinator: save, list, get, run and delete tests.

Versions are immutable KV entries ``<slug>.<version>`` in ``surge_tests``; a save
creates the next key with ``create`` (only if absent), so two clients saving at once
get two versions, never one overwritten. The slug is the name made safe for a KV
key; the stored name is the truth, and two names with one slug are refused.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from schemas.catalogue import (
    DEFAULT_SUITE,
    TestDeleted,
    TestDetail,
    TestList,
    TestListRequest,
    TestRef,
    TestRun,
    TestSave,
    TestSummary,
    TestVersion,
    VersionInfo,
)
from schemas.control import RunStarted
from schemas import subjects
from schemas.errors import Conflict, NoGenerators, NotFound, Unavailable
from schemas.plan import Plan
from schemas.schedules import Overrides
from services.common import bus
from services.common.client import error_from
from services.plan import loader

if TYPE_CHECKING:
    from services.coordinator.service import Service

log = structlog.get_logger(__name__)
_decoder = msgspec.json.Decoder(TestVersion)
SAVE_TRIES = 10


def slug(name: str) -> str:
    """A test name as one KV key token: lower case, [a-z0-9_-]."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "test"


def target_system(target: str) -> str:
    """The default target system of a plan: its target's host:port."""
    parts = urlsplit(target)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname or target}:{port}"


class Catalogue:
    def __init__(self, svc: Service, kv: KeyValue) -> None:
        self.svc = svc
        self.kv = kv

    # --- storage ------------------------------------------------------------------
    async def _keys(self) -> list[str]:
        try:
            return await bus.kv_keys(self.kv)
        except NoKeysError:
            return []

    async def _versions(self, name: str) -> list[int]:
        prefix = slug(name) + "."
        out = []
        for key in await self._keys():
            head, _, tail = key.rpartition(".")
            if head + "." == prefix and tail.isdigit():
                out.append(int(tail))
        return sorted(out)

    async def _get(self, name: str, version: int) -> TestVersion:
        try:
            entry = await self.kv.get(f"{slug(name)}.{version}")
        except KeyNotFoundError:
            raise NotFound(f"test {name!r} has no version {version}", "version") from None
        return _decoder.decode(entry.value)

    async def latest(self, name: str, version: int | None = None) -> tuple[TestVersion, list[int]]:
        versions = await self._versions(name)
        if not versions:
            raise NotFound(f"no test named {name!r}", "name")
        test = await self._get(name, version or versions[-1])
        if test.name != name:
            raise NotFound(f"no test named {name!r} (a test {test.name!r} has its key)", "name")
        return test, versions

    # --- endpoints (rows of schemas/api.py, named after them) ---------------------
    async def test_save(self, ask: TestSave) -> TestVersion:
        plan = loader.from_obj(ask.plan)
        loader.check_target_allowed(plan, self.svc.config.target_allow)
        name = ask.name or plan.name
        for _ in range(SAVE_TRIES):
            versions = await self._versions(name)
            prev = await self._get(name, versions[-1]) if versions else None
            if prev is not None and prev.name != name:
                raise Conflict(f"test {prev.name!r} already uses the key of {name!r}; "
                               "choose another name", "name")
            test = TestVersion(
                name=name,
                version=(versions[-1] + 1) if versions else 1,
                suite=ask.suite or (prev.suite if prev else DEFAULT_SUITE),
                description=ask.description if ask.description is not None else (
                    plan.description or (prev.description if prev else "")),
                owner=ask.owner or (prev.owner if prev else ask.author),
                tags=ask.tags if ask.tags is not None else (list(prev.tags) if prev else []),
                target_system=ask.target_system or (
                    prev.target_system if prev else target_system(plan.target)),
                author=ask.author,
                saved_at=time.time(),
                plan=plan,
                source=ask.source,
            )
            try:
                await self.kv.create(f"{slug(name)}.{test.version}", msgspec.json.encode(test))
            except KeyWrongLastSequenceError:
                continue  # someone saved this version first: take the next one
            log.info("test saved", test=name, version=test.version, author=ask.author)
            return test
        raise Conflict(f"test {name!r} is being saved by others; try again")

    async def test_list(self, q: TestListRequest) -> TestList:
        return TestList(tests=[
            t for t in await self.summaries()
            if (q.suite is None or t.suite == q.suite) and (q.tag is None or q.tag in t.tags)
            and (not q.search or q.search.lower() in f"{t.name} {t.description} {t.owner}".lower())
        ])

    async def summaries(self) -> list[TestSummary]:
        """The latest version of every test, by name."""
        latest: dict[str, int] = {}
        counts: dict[str, int] = {}
        for key in await self._keys():
            head, _, tail = key.rpartition(".")
            if tail.isdigit():
                latest[head] = max(latest.get(head, 0), int(tail))
                counts[head] = counts.get(head, 0) + 1
        out = []
        for head, version in sorted(latest.items()):
            try:
                t = _decoder.decode((await self.kv.get(f"{head}.{version}")).value)
            except (KeyNotFoundError, msgspec.DecodeError):
                continue
            out.append(TestSummary(
                name=t.name, version=t.version, versions=counts[head], suite=t.suite,
                description=t.description, owner=t.owner, tags=list(t.tags),
                target_system=t.target_system, author=t.author, saved_at=t.saved_at,
            ))
        return out

    async def test_get(self, ref: TestRef) -> TestDetail:
        test, versions = await self.latest(ref.name, ref.version)
        infos = []
        for v in versions:
            t = test if v == test.version else await self._get(ref.name, v)
            infos.append(VersionInfo(version=v, author=t.author, saved_at=t.saved_at))
        return TestDetail(test=test, versions=infos)

    async def test_run(self, ask: TestRun) -> RunStarted:
        return await self.start_test(
            ask.name, ask.version,
            Overrides(rate=ask.rate, duration=ask.duration, generators=ask.generators),
            author=ask.author)

    async def start_test(
        self, name: str, version: int | None, overrides: Overrides | None = None, *,
        run_id: str | None = None, rate: float | None = None, author: str = "anonymous",
    ) -> RunStarted:
        """Run a version of a test (the latest: None) with overrides; ``rate`` wins over theirs."""
        test, _ = await self.latest(name, version)
        o = overrides or Overrides()
        rate = rate if rate is not None else o.rate
        plan = test.plan
        if rate is not None or o.duration is not None or o.generators is not None:
            plan = loader.with_overrides(plan, rate=rate, duration=o.duration, generators=o.generators)
        return await self.svc.start_plan(plan, test=test.name, test_version=test.version,
                                         run_id=run_id, author=author)

    async def plan_send_once(self, plan: Plan) -> bytes:
        """One iteration of ``plan`` on a generator (an idle one if any), every step in full."""
        self.svc._admit(plan)
        alive = self.svc.registry.alive()
        if not alive:
            raise NoGenerators("no generators are registered")
        idle = self.svc.idle_generators()
        gid = idle[0] if idle else sorted(alive)[0]
        steps = len(plan.setup.steps if plan.setup else []) + sum(len(f.steps) for f in plan.flows) \
            + len(plan.requests)
        try:
            msg = await self.svc.nc.request(subjects.send_once(gid), msgspec.json.encode(plan),
                                            timeout=min(plan.timeout * (steps + 1) + 2.0, 120.0))
        except Exception as exc:
            raise Unavailable(f"generator {gid} did not answer: {exc or type(exc).__name__}") from None
        if msg.headers and msg.headers.get("Nats-Service-Error-Code"):
            raise error_from(msg.data)
        return msg.data

    async def test_delete(self, ref: TestRef) -> TestDeleted:
        _, versions = await self.latest(ref.name)
        doomed = [ref.version] if ref.version is not None else versions
        for v in doomed:
            if v not in versions:
                raise NotFound(f"test {ref.name!r} has no version {v}", "version")
        for v in doomed:
            await self.kv.purge(f"{slug(ref.name)}.{v}")
        log.info("test deleted", test=ref.name, versions=len(doomed))
        return TestDeleted(name=ref.name, versions=len(doomed))
