"""Routes of test management: the catalogue, schedules, the run archive (docs/ui.md).

A thin shell over the coordinator API, like ``routes.py``: each body decodes into the
API's own request Struct here (the browser cannot pass anything the bus would refuse),
and the coordinator stays the authority. Changes made from the UI carry the author
``ui`` (the UI's token is one shared secret, not a person).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import yaml
from aiohttp import web
from msgspec import Meta, Struct

from schemas import api
from schemas.archive import Conclusion, RunAnnotate, RunSearch, Url
from schemas.catalogue import Label, Tag, TestListRequest, TestRef, TestRun, TestSave
from schemas.control import Segment
from schemas.errors import BadRequest, NotFound, SurgeError
from schemas.plan import Name
from schemas.schedules import ScheduleAdd
from services.common.fields import field_of
from services.plan import loader, profile
from services.ui import inputs
from services.ui.app import middleware
from services.ui.app.ws import SERVICE

AUTHOR = "ui"


class SaveBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Save the editor's plan text as a new version of a test."""

    plan: Annotated[str, Meta(min_length=1, max_length=inputs.MAX_PLAN_BYTES)]
    suite: Label | None = None
    tags: list[Tag] | None = None
    description: str | None = None
    name: Name | None = None


class NoteBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Add to a run in the archive: a note, a conclusion, tags, links."""

    note: Annotated[str, Meta(max_length=65_536)] | None = None
    conclusion: Conclusion | None = None
    conclusion_text: Annotated[str, Meta(max_length=65_536)] = ""
    tags: list[Tag] = []
    links: list[Url] = []


def _json(value) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), content_type="application/json")


def _api(request: web.Request):
    return request.app[SERVICE].api


def _query(request: web.Request, typ: type):
    """Query parameters as the API request ``typ`` (numbers where it says so)."""
    names = {f.name for f in msgspec.structs.fields(typ)}
    unknown = sorted(set(request.query) - names)
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}", unknown[0])
    raw = {k: v for k, v in request.query.items() if v != ""}
    try:
        return msgspec.convert(raw, typ, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc), field_of(str(exc))) from None


class PlanJson(Struct, frozen=True, forbid_unknown_fields=True):
    """The request builder's plan (JSON), to be written as YAML."""

    plan: dict


async def plan_yaml(request: web.Request) -> web.Response:
    """The builder's form as YAML text (keys in the plan's order), for the YAML view."""
    body = inputs.decode(await request.read(), PlanJson)
    text = yaml.safe_dump(body.plan, sort_keys=False, allow_unicode=True, width=100)
    return _json({"yaml": text})


async def tests_list(request: web.Request) -> web.Response:
    return _json(await _api(request).send(api.TEST_LIST, _query(request, TestListRequest)))


async def test_get(request: web.Request) -> web.Response:
    return _json(await _api(request).send(api.TEST_GET, _query(request, TestRef)))


async def test_save(request: web.Request) -> web.Response:
    body = inputs.decode(await request.read(), SaveBody)
    try:
        raw = inputs.plan_object(body.plan)
        saved = await _api(request).send(api.TEST_SAVE, TestSave(
            plan=raw, source=body.plan, name=body.name, suite=body.suite, tags=body.tags,
            description=body.description, author=AUTHOR))
    except SurgeError as err:
        line = inputs.line_of(body.plan, err.field) if err.field else inputs.yaml_error_line(body.plan)
        return middleware.error_response(err.status, err.code, err.message, err.field, line=line)
    return _json(saved)


async def test_run(request: web.Request) -> web.Response:
    ask = inputs.decode(await request.read(), TestRun)
    return _json(await _api(request).send(api.TEST_RUN, msgspec.structs.replace(ask, author=AUTHOR)))


async def test_profile(request: web.Request) -> web.Response:
    """A test version's rate over time (the plan's profile), for the schedule form's preview."""
    t = (await _api(request).send(api.TEST_GET, _query(request, TestRef))).test
    prof = profile.from_plan(t.plan)
    return _json({"name": t.name, "version": t.version, "model": t.plan.model, "segments": prof,
                  "duration_s": profile.duration(prof), "peak_rps": profile.peak(prof)})


class SuiteQuery(Struct, frozen=True, forbid_unknown_fields=True):
    name: Name


async def suites_list(request: web.Request) -> web.Response:
    return _json(await _api(request).suite_list())


async def suite_profile(request: web.Request) -> web.Response:
    """A suite's rate over time: its steps one after another, its pauses at rate 0."""
    name = _query(request, SuiteQuery).name
    a = _api(request)
    suite = next((s for s in (await a.suite_list()).suites if s.name == name), None)
    if suite is None:
        raise NotFound(f"no suite named {name!r}", "name")
    if suite.mode == "stages":
        plan = (await a.test_get(suite.tests[0])).test.plan
        plans = [loader.with_overrides(plan, rate=r) for r in suite.rates]
    else:
        names = list(suite.tests) or [t.name for t in (await a.test_list(suite=suite.name)).tests]
        plans = [(await a.test_get(n)).test.plan for n in names]
    segments, at = [], 0.0
    for i, plan in enumerate(plans):
        if i and suite.pause_s:
            segments.append(Segment(at, at + suite.pause_s, 0.0, 0.0))
            at += suite.pause_s
        prof = profile.from_plan(plan)
        segments += [Segment(at + s.start_s, at + s.end_s, s.start_rps, s.end_rps) for s in prof]
        at += profile.duration(prof)
    return _json({"name": suite.name, "model": "open", "segments": segments, "duration_s": at,
                  "peak_rps": max((max(s.start_rps, s.end_rps) for s in segments), default=0.0),
                  "steps": len(plans)})


async def queue(request: web.Request) -> web.Response:
    """The queue, and whether this UI may approve (it has approver credentials)."""
    runs = msgspec.to_builtins(await _api(request).queue())
    return _json({**runs, "can_approve": request.app[SERVICE].approver is not None})


class ApproveBody(Struct, frozen=True, forbid_unknown_fields=True):
    approve: bool = True  # false: refuse the run
    reason: Annotated[str, Meta(max_length=4096)] = ""


async def run_approve(request: web.Request) -> web.Response:
    """Approve or refuse a run over its quota, on the approver's own NATS connection.

    Only when the UI is configured with approver credentials (SURGE_UI_APPROVER_USER);
    the decision is kept with ``ui <browser address>`` as who made it, like run control.
    """
    run_id = inputs.run_id(request.match_info["run_id"])
    approver = request.app[SERVICE].approver
    if approver is None:
        return middleware.error_response(
            403, "approval_not_configured",
            "this UI has no approver credentials (SURGE_UI_APPROVER_USER); use surge approve")
    body = inputs.decode(await request.read(), ApproveBody)
    return _json(await approver.approve(run_id, body.approve, body.reason,
                                        author=f"ui {request.remote or 'unknown'}"))


async def schedules_list(request: web.Request) -> web.Response:
    return _json(await _api(request).schedule_list())


async def schedule_add(request: web.Request) -> web.Response:
    ask = inputs.decode(await request.read(), ScheduleAdd)
    return _json(await _api(request).send(api.SCHEDULE_ADD, msgspec.structs.replace(ask, author=AUTHOR)))


async def archive_search(request: web.Request) -> web.Response:
    return _json(await _api(request).send(api.RUN_SEARCH, _query(request, RunSearch)))


async def run_annotate(request: web.Request) -> web.Response:
    run_id = inputs.run_id(request.match_info["run_id"])
    body = inputs.decode(await request.read(), NoteBody)
    ask = RunAnnotate(run_id=run_id, note=body.note, conclusion=body.conclusion,
                      conclusion_text=body.conclusion_text, tags=body.tags, links=body.links,
                      author=AUTHOR)
    return _json(await _api(request).send(api.RUN_ANNOTATE, ask))


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/api/plans/yaml", plan_yaml)
    r.add_get("/api/tests", tests_list)
    r.add_get("/api/test", test_get)  # ?name=&version= (a name may hold a "/")
    r.add_post("/api/tests", test_save)
    r.add_post("/api/test/run", test_run)
    r.add_get("/api/test/profile", test_profile)
    r.add_get("/api/queue", queue)
    r.add_post("/api/queue/{run_id}/approve", run_approve)
    r.add_get("/api/suites", suites_list)
    r.add_get("/api/suite/profile", suite_profile)
    r.add_get("/api/schedules", schedules_list)
    r.add_post("/api/schedules", schedule_add)
    r.add_get("/api/archive", archive_search)
    r.add_post("/api/runs/{run_id}/notes", run_annotate)
