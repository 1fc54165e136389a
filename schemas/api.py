"""The coordinator API as one table: each endpoint's name, subject, request, reply, errors.

The table drives everything that speaks the API: the coordinator registers one
``nats.micro`` endpoint per row and decodes each request into the row's ``request``
type before its handler sees it (a handler takes a typed request and returns a typed
reply); the client (``services.common.client``) sends the row's request type and decodes
the row's reply type; the NATS CLI docs test checks the page against it. Adding an
endpoint is one row here, one subject in ``subjects.py`` and one handler.

``errors`` lists the codes (``schemas.errors``) a caller may get besides the ones every
endpoint can answer (``COMMON_ERRORS``): a decoding failure, a standby, a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from schemas import subjects
from schemas.control import (
    Empty,
    GeneratorList,
    Ok,
    PlanValid,
    RateChange,
    RunList,
    RunListRequest,
    RunRecord,
    RunRef,
    RunStarted,
    StopRequest,
    GeneratorStart,
)
from schemas.catalogue import (
    TestDeleted, TestDetail, TestList, TestListRequest, TestRef, TestRun, TestSave, TestVersion,
)
from schemas.archive import (
    Annotations, Baseline, BaselineSet, Imported, RunAnnotate, RunBundle, RunSearch, RunSearchResult,
)
from schemas.plan import Plan
from schemas.quotas import Approval, QueuedRun, QueueList
from schemas.tryout import SendOnceResult
from schemas.schedules import (
    Removed, ScheduleAdd, ScheduleInfo, ScheduleList, ScheduleRef, Suite, SuiteList, SuiteRun,
    SuiteRunRef, SuiteRunRequest, SuiteSave,
)
from schemas.stats import Report

Req = TypeVar("Req")
Rep = TypeVar("Rep")

#: what any endpoint may answer: a body that does not decode (the plan endpoints say
#: invalid_plan instead), a coordinator that is not the leader, a handler that failed
COMMON_ERRORS: tuple[str, ...] = ("bad_request", "not_leader", "internal")


@dataclass(frozen=True)
class Endpoint(Generic[Req, Rep]):
    """One API endpoint, as ``nats micro info`` lists it (name, subject)."""

    name: str
    subject: str
    request: type[Req]
    reply: type[Rep]
    errors: tuple[str, ...] = ()
    empty_ok: bool = False  # an empty body reads as ``{}`` (all defaults)
    read_only: bool = True  # changes nothing: a read-only NATS user may call it

    def may_answer(self, code: str) -> bool:
        return code in self.errors or code in COMMON_ERRORS


RUN_START = Endpoint("run_start", subjects.RUN_START, Plan, RunStarted,
                     ("invalid_plan", "target_not_allowed", "no_generators", "quota_exceeded"),
                     read_only=False)
RUN_STOP = Endpoint("run_stop", subjects.RUN_STOP, StopRequest, Ok, ("not_found", "conflict"),
                    read_only=False)
RUN_RATE = Endpoint("run_rate", subjects.RUN_RATE, RateChange, Ok, ("not_found", "conflict"),
                    read_only=False)
RUN_GET = Endpoint("run_get", subjects.RUN_GET, RunRef, RunRecord, ("not_found",))
RUN_LIST = Endpoint("run_list", subjects.RUN_LIST, RunListRequest, RunList, empty_ok=True)
PLAN_VALIDATE = Endpoint("plan_validate", subjects.PLAN_VALIDATE, Plan, PlanValid,
                         ("invalid_plan", "target_not_allowed"))
GENERATORS_LIST = Endpoint("generators_list", subjects.GENERATORS_LIST, Empty, GeneratorList,
                           empty_ok=True)
# one generator of a running test (docs/fleet.md); run.rate and run.stop take "generator" too
RUN_GENERATOR_START = Endpoint("run_generator_start", subjects.RUN_GENERATOR_START, GeneratorStart,
                               Ok, ("not_found", "conflict"), read_only=False)
REPORT_GET = Endpoint("report_get", subjects.REPORT_GET, RunRef, Report, ("not_found", "conflict"))
# the test catalogue (docs/catalogue.md); handled by services/coordinator/catalogue.py
TEST_SAVE = Endpoint("test_save", subjects.TEST_SAVE, TestSave, TestVersion,
                     ("invalid_plan", "target_not_allowed", "conflict"), read_only=False)
TEST_LIST = Endpoint("test_list", subjects.TEST_LIST, TestListRequest, TestList, empty_ok=True)
TEST_GET = Endpoint("test_get", subjects.TEST_GET, TestRef, TestDetail, ("not_found",))
TEST_RUN = Endpoint("test_run", subjects.TEST_RUN, TestRun, RunStarted,
                    ("not_found", "invalid_plan", "target_not_allowed", "no_generators",
                     "quota_exceeded"),
                    read_only=False)
TEST_DELETE = Endpoint("test_delete", subjects.TEST_DELETE, TestRef, TestDeleted, ("not_found",),
                       read_only=False)
# schedules and phased suites (docs/schedules.md): services/coordinator/schedules.py, suites.py
SCHEDULE_ADD = Endpoint("schedule_add", subjects.SCHEDULE_ADD, ScheduleAdd, ScheduleInfo,
                        ("not_found", "conflict"), read_only=False)
SCHEDULE_LIST = Endpoint("schedule_list", subjects.SCHEDULE_LIST, Empty, ScheduleList, empty_ok=True)
SCHEDULE_DELETE = Endpoint("schedule_delete", subjects.SCHEDULE_DELETE, ScheduleRef, Removed,
                           ("not_found",), read_only=False)
SUITE_SAVE = Endpoint("suite_save", subjects.SUITE_SAVE, SuiteSave, Suite, ("not_found",),
                      read_only=False)
SUITE_LIST = Endpoint("suite_list", subjects.SUITE_LIST, Empty, SuiteList, empty_ok=True)
SUITE_RUN = Endpoint("suite_run", subjects.SUITE_RUN, SuiteRunRequest, SuiteRun,
                     ("not_found", "conflict"), read_only=False)
SUITE_GET = Endpoint("suite_get", subjects.SUITE_GET, SuiteRunRef, SuiteRun, ("not_found",))
# the run archive (docs/archive.md): services/coordinator/archive.py
RUN_ANNOTATE = Endpoint("run_annotate", subjects.RUN_ANNOTATE, RunAnnotate, Annotations,
                        ("not_found", "conflict"), read_only=False)
RUN_SEARCH = Endpoint("run_search", subjects.RUN_SEARCH, RunSearch, RunSearchResult, empty_ok=True)
RUN_EXPORT = Endpoint("run_export", subjects.RUN_EXPORT, RunRef, RunBundle, ("not_found",))
RUN_IMPORT = Endpoint("run_import", subjects.RUN_IMPORT, RunBundle, Imported, ("conflict",),
                      read_only=False)
TEST_BASELINE = Endpoint("test_baseline", subjects.TEST_BASELINE, BaselineSet, Baseline,
                         ("not_found", "conflict"), read_only=False)
# the request builder's "send once" (docs/ui.md): services/coordinator/catalogue.py
PLAN_SEND_ONCE = Endpoint("plan_send_once", subjects.PLAN_SEND_ONCE, Plan, SendOnceResult,
                          ("invalid_plan", "target_not_allowed", "no_generators", "unavailable"),
                          read_only=False)
# quotas and approvals (docs/quotas.md): services/coordinator/quotas.py
RUN_QUEUE = Endpoint("run_queue", subjects.RUN_QUEUE, Empty, QueueList, empty_ok=True)
RUN_APPROVE = Endpoint("run_approve", subjects.RUN_APPROVE, Approval, QueuedRun,
                       ("not_found", "conflict"), read_only=False)

#: every endpoint of the ``surge-coordinator`` service, in the order it registers them
ENDPOINTS: tuple[Endpoint, ...] = (
    RUN_START, RUN_STOP, RUN_RATE, RUN_GET, RUN_LIST, PLAN_VALIDATE, GENERATORS_LIST, REPORT_GET,
    RUN_GENERATOR_START,
    TEST_SAVE, TEST_LIST, TEST_GET, TEST_RUN, TEST_DELETE,
    SCHEDULE_ADD, SCHEDULE_LIST, SCHEDULE_DELETE, SUITE_SAVE, SUITE_LIST, SUITE_RUN, SUITE_GET,
    RUN_ANNOTATE, RUN_SEARCH, RUN_EXPORT, RUN_IMPORT, TEST_BASELINE, RUN_QUEUE, RUN_APPROVE,
    PLAN_SEND_ONCE,
)

#: endpoint name (as ``nats micro info`` shows it) -> subject
API_ENDPOINTS: dict[str, str] = {e.name: e.subject for e in ENDPOINTS}
BY_SUBJECT: dict[str, Endpoint] = {e.subject: e for e in ENDPOINTS}
BY_NAME: dict[str, Endpoint] = {e.name: e for e in ENDPOINTS}
