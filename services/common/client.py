"""A typed client of the coordinator API over NATS, for the CLI (and tests, and the UI).

Every call is one request on a ``surge.api.*`` subject: the typed request of its
``schemas.api`` row, JSON-encoded; the reply is decoded into the row's reply type, and
an error reply comes back as the ``SurgeError`` subclass its code names.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
from nats.aio.client import Client

from schemas import api
from schemas.api import Endpoint
from schemas.catalogue import (
    TestDeleted, TestDetail, TestList, TestListRequest, TestRef, TestRun, TestSave, TestVersion,
)
from schemas.control import (
    Empty, GeneratorList, GeneratorStart, Ok, PlanValid, RateChange, RunList, RunListRequest,
    RunRecord, RunRef, RunStarted, StopRequest,
)
from schemas.schedules import (
    Overrides, Removed, ScheduleAdd, ScheduleInfo, ScheduleList, ScheduleRef, Suite, SuiteList,
    SuiteRun, SuiteRunRef, SuiteRunRequest, SuiteSave,
)
from schemas.archive import (
    Annotations, Baseline, BaselineSet, Imported, RunAnnotate, RunBundle, RunSearch, RunSearchResult,
)
from schemas.quotas import Approval, QueuedRun, QueueList
from schemas.errors import ErrorReply, NotLeader, SurgeError, Unavailable
from schemas.plan import Plan
from schemas.stats import Report
from services.common.bus import connect_options
from services.common.config import nats_auth

T = TypeVar("T")
Req = TypeVar("Req")
Rep = TypeVar("Rep")
_CODES = {cls.code: cls for cls in SurgeError.__subclasses__()}


def error_from(data: bytes) -> SurgeError:
    try:
        body = msgspec.json.decode(data, type=ErrorReply).error
    except msgspec.DecodeError:
        return SurgeError(data[:200].decode(errors="replace"))
    return _CODES.get(body.code, SurgeError)(body.message, body.field)


class CoordinatorClient:
    """Thin: encode, request, decode or raise."""

    def __init__(self, nc: Client, timeout_s: float = 5.0) -> None:
        self.nc = nc
        self.timeout_s = timeout_s

    @classmethod
    async def connect(cls, url: str, timeout_s: float = 5.0) -> CoordinatorClient:
        try:
            nc = await nats.connect(
                servers=[u.strip() for u in url.split(",")],
                name="surge-cli",
                connect_timeout=2,
                max_reconnect_attempts=3,
                allow_reconnect=True,
                **connect_options(nats_auth()),  # SURGE_NATS_USER/..., TLS: docs/security.md
            )
        except Exception as exc:
            raise Unavailable(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None
        return cls(nc, timeout_s)

    async def close(self) -> None:
        await self.nc.drain()

    async def send(self, ep: Endpoint[Req, Rep], body: Req) -> Rep:
        """One typed request of the API table; its typed reply."""
        return await self.call(ep.subject, body, ep.reply)

    async def send_raw(self, ep: Endpoint[Req, Any], body: Req) -> bytes:
        """One typed request of the API table; the reply's JSON as it came (to pass on)."""
        return await self.call(ep.subject, body, bytes)

    async def call(self, subject: str, body: Any, typ: type[T]) -> T:
        """Any body (bytes as they are) on ``subject``; the reply as ``typ`` (or bytes).

        A coordinator handover (docs/design.md, "Coordinator high availability") leaves a
        moment with no leader: nobody serves the API, or the old leader answers
        ``not_leader``. Neither has acted on the request, so it is sent again, every
        request alike, until ``timeout_s`` has passed. A request that timed out may have
        been acted on and is never resent.
        """
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        deadline = time.monotonic() + self.timeout_s
        pause = 0.05
        while True:
            left = deadline - time.monotonic()
            try:
                msg = await self.nc.request(subject, data, timeout=max(left, 0.05))
            except nats.errors.NoRespondersError:
                if time.monotonic() + pause < deadline:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.5)
                    continue
                raise Unavailable("no coordinator is answering (is the stack up? `surge up`)") from None
            except nats.errors.TimeoutError:
                raise Unavailable(f"the coordinator did not answer {subject} in time") from None
            if msg.headers and msg.headers.get("Nats-Service-Error-Code"):
                error = error_from(msg.data)
                if isinstance(error, NotLeader) and time.monotonic() + pause < deadline:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.5)
                    continue
                raise error
            break
        if typ is bytes:
            return msg.data  # type: ignore[return-value]
        return msgspec.json.decode(msg.data, type=typ)

    async def start(self, plan: Plan) -> RunStarted:
        return await self.send(api.RUN_START, plan)

    async def validate(self, plan: Plan) -> PlanValid:
        return await self.send(api.PLAN_VALIDATE, plan)

    async def stop(self, run_id: str, generator: str | None = None, by: str = "") -> Ok:
        return await self.send(api.RUN_STOP, StopRequest(run_id, generator, by))

    async def rate(self, run_id: str, rate: float, generator: str | None = None, by: str = "") -> Ok:
        return await self.send(api.RUN_RATE, RateChange(run_id, rate, generator, by))

    async def start_generator(self, run_id: str, generator: str, by: str = "") -> Ok:
        return await self.send(api.RUN_GENERATOR_START, GeneratorStart(run_id, generator, by))

    async def get(self, run_id: str) -> RunRecord:
        return await self.send(api.RUN_GET, RunRef(run_id))

    async def list(self, limit: int = 100) -> RunList:
        return await self.send(api.RUN_LIST, RunListRequest(limit=limit))

    async def generators(self) -> GeneratorList:
        return await self.send(api.GENERATORS_LIST, Empty())

    async def report_bytes(self, run_id: str) -> bytes:
        """The report as the coordinator stored it (``Report`` JSON), not decoded."""
        return await self.call(api.REPORT_GET.subject, RunRef(run_id), bytes)

    async def report(self, run_id: str) -> Report:
        return await self.send(api.REPORT_GET, RunRef(run_id))

    # --- the test catalogue (docs/catalogue.md) -------------------------------------
    async def test_save(self, plan: Plan | dict, source: str | None = None, **labels: Any) -> TestVersion:
        return await self.send(api.TEST_SAVE, TestSave(plan=plan, source=source, **labels))

    async def test_list(self, suite: str | None = None, tag: str | None = None,
                        search: str | None = None) -> TestList:
        return await self.send(api.TEST_LIST, TestListRequest(suite=suite, tag=tag, search=search))

    async def test_get(self, name: str, version: int | None = None) -> TestDetail:
        return await self.send(api.TEST_GET, TestRef(name=name, version=version))

    async def test_run(self, name: str, **options: Any) -> RunStarted:
        return await self.send(api.TEST_RUN, TestRun(name=name, **options))

    async def test_delete(self, name: str, version: int | None = None) -> TestDeleted:
        return await self.send(api.TEST_DELETE, TestRef(name=name, version=version))

    # --- schedules and suites (docs/schedules.md) ---------------------------------
    async def schedule_add(self, name: str, **fields: Any) -> ScheduleInfo:
        return await self.send(api.SCHEDULE_ADD, ScheduleAdd(name=name, **fields))

    async def schedule_list(self) -> ScheduleList:
        return await self.send(api.SCHEDULE_LIST, Empty())

    async def schedule_delete(self, name: str) -> Removed:
        return await self.send(api.SCHEDULE_DELETE, ScheduleRef(name=name))

    async def suite_save(self, name: str, **fields: Any) -> Suite:
        return await self.send(api.SUITE_SAVE, SuiteSave(name=name, **fields))

    async def suite_list(self) -> SuiteList:
        return await self.send(api.SUITE_LIST, Empty())

    async def suite_run(self, name: str, author: str = "anonymous") -> SuiteRun:
        return await self.send(api.SUITE_RUN, SuiteRunRequest(name=name, author=author))

    async def suite_get(self, suite_run_id: str) -> SuiteRun:
        return await self.send(api.SUITE_GET, SuiteRunRef(id=suite_run_id))

    # --- the run archive (docs/archive.md) --------------------------------------------
    async def annotate(self, run_id: str, **fields: Any) -> Annotations:
        return await self.send(api.RUN_ANNOTATE, RunAnnotate(run_id=run_id, **fields))

    async def search(self, **filters: Any) -> RunSearchResult:
        return await self.send(api.RUN_SEARCH, RunSearch(**filters))

    async def export_run(self, run_id: str) -> RunBundle:
        return await self.send(api.RUN_EXPORT, RunRef(run_id))

    async def import_run(self, bundle: RunBundle) -> Imported:
        return await self.send(api.RUN_IMPORT, bundle)

    async def set_baseline(self, test: str, run_id: str | None, author: str = "anonymous") -> Baseline:
        return await self.send(api.TEST_BASELINE, BaselineSet(test=test, run_id=run_id, author=author))

    # --- quotas and approvals (docs/quotas.md) ----------------------------------------
    async def queue(self) -> QueueList:
        return await self.send(api.RUN_QUEUE, Empty())

    async def approve(self, run_id: str, approve: bool = True, reason: str = "",
                      author: str = "anonymous") -> QueuedRun:
        return await self.send(api.RUN_APPROVE, Approval(run_id=run_id, approve=approve,
                                                         reason=reason, author=author))
