"""Routes: the pages, the JSON API (a thin shell over ``CoordinatorClient``), login.

Every handler validates what the browser sent (``inputs``) before anything reaches the
bus; coordinator errors come back as the same ``{"error": {...}}`` with their status.
Plan errors also carry the ``line`` of the plan text the field is on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from schemas import api
from schemas.api import Endpoint
from schemas.control import Empty, RunListRequest, RunRef
from schemas.errors import InvalidPlan, SurgeError
from schemas.stats import Report
from services.plan import importers
from services.common import runlogs
from services.reports import curves, html
from services.ui import auth, inputs
from services.ui.app import catalogue, middleware, pages
from services.ui.app.ws import SERVICE, websocket

STATIC = Path(__file__).resolve().parent.parent / "static"
MAX_BODY = inputs.MAX_IMPORT_BYTES + 64 * 1024  # each endpoint's Struct bounds its own fields


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status,
                        content_type="application/json")


def _svc(request: web.Request):
    return request.app[SERVICE]


def _run_id(request: web.Request) -> str:
    return inputs.run_id(request.match_info["run_id"])


# --- pages ---------------------------------------------------------------------------
def _page(name: str, charts: bool = False):
    async def handler(request: web.Request) -> web.Response:
        if "run_id" in request.match_info:
            _run_id(request)
        return pages.page(name, charts)

    return handler


async def login_form(request: web.Request) -> web.Response:
    return pages.login()


async def login_submit(request: web.Request) -> web.StreamResponse:
    token = _svc(request).config.ui_token
    if not auth.same_origin(request.headers.get("Origin"), request.host):
        return middleware.error_response(403, "bad_origin", "request from another origin refused")
    if request.content_type == "application/json":
        given = inputs.decode(await request.read(), inputs.Login).token
    else:
        form = await request.post()
        given = str(form.get("token", ""))[:4096]
    if token and not auth.token_ok(token, given):
        return pages.login("That token is not right.", status=401)
    response = web.Response(status=303, headers={"Location": "/"})
    if token:
        response.set_cookie(auth.SESSION_COOKIE, auth.session_value(token), httponly=True,
                            samesite="Strict", path="/", secure=request.secure)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    return response


# --- API -----------------------------------------------------------------------------
async def session(request: web.Request) -> web.Response:
    svc = _svc(request)
    return _json({"auth": bool(svc.config.ui_token), "csrf_header": auth.CSRF_HEADER,
                  "csrf_cookie": auth.CSRF_COOKIE})


async def runs_list(request: web.Request) -> web.Response:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        return middleware.error_response(400, "bad_request", "limit is 1..1000", "limit")
    body = await _svc(request).api.send_raw(api.RUN_LIST, RunListRequest(limit=int(raw)))
    return web.Response(body=body, content_type="application/json")


async def run_get(request: web.Request) -> web.Response:
    body = await _svc(request).api.send_raw(api.RUN_GET, RunRef(_run_id(request)))
    return web.Response(body=body, content_type="application/json")


async def _read(request: web.Request, limit: int = inputs.MAX_PLAN_BYTES + 64 * 1024) -> bytes:
    """The body, refused with 413 past ``limit`` (the app allows imports' larger bodies)."""
    data = await request.read()
    if len(data) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
    return data


async def _plan_call(request: web.Request, ep: Endpoint) -> web.Response:
    """A plan endpoint with the editor's text: sent as JSON so the coordinator's errors name
    the field (and the editor its line)."""
    text = inputs.decode(await _read(request), inputs.PlanText).plan
    try:
        raw = inputs.plan_object(text)
        try:
            body = msgspec.json.encode(raw)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidPlan(f"the plan has values JSON cannot carry: {exc}") from None
        result = await _svc(request).api.call(ep.subject, body, ep.reply)
    except SurgeError as err:
        line = inputs.line_of(text, err.field) if err.field else inputs.yaml_error_line(text)
        return middleware.error_response(err.status, err.code, err.message, err.field, line=line)
    return _json(result)


async def plan_send_once(request: web.Request) -> web.Response:
    """The request builder's "send once": one iteration through a generator (docs/ui.md)."""
    return await _plan_call(request, api.PLAN_SEND_ONCE)


async def plan_validate(request: web.Request) -> web.Response:
    return await _plan_call(request, api.PLAN_VALIDATE)


async def run_start(request: web.Request) -> web.Response:
    return await _plan_call(request, api.RUN_START)


def _import(body: inputs.ImportBody) -> dict[str, Any]:
    """The same conversion as ``surge import``; an upload brings no files, so none are read."""
    imported = importers.convert_text(body.kind, body.source, name=body.name, base_dir=None,
                                      target=body.target, origin=body.origin,
                                      environment=body.environment)
    importers.build(imported, out_dir=None, target=body.target)
    return {"plan": imported.to_yaml(f"{body.kind} upload"), "unmapped": imported.unmapped,
            "everything_mapped": not imported.unmapped}


async def plan_import(request: web.Request) -> web.Response:
    body = inputs.decode(await request.read(), inputs.ImportBody)
    try:
        return _json(await asyncio.to_thread(_import, body))
    except importers.ImportError_ as exc:
        return middleware.error_response(400, "import_failed", f"cannot import: {exc}", "source")


def _who(request: web.Request) -> str:
    """Who asks, for the run's events: the UI and the browser's address."""
    return f"ui {request.remote or 'unknown'}"


async def run_rate(request: web.Request) -> web.Response:
    body = inputs.decode(await request.read(), inputs.RateBody)
    return _json(await _svc(request).api.rate(_run_id(request), body.rate, body.generator,
                                              by=_who(request)))


async def run_stop(request: web.Request) -> web.Response:
    data = await request.read()
    generator = inputs.decode(data, inputs.GeneratorBody).generator if data.strip() else None
    return _json(await _svc(request).api.stop(_run_id(request), generator, by=_who(request)))


async def run_generator_start(request: web.Request) -> web.Response:
    generator = inputs.decode(await request.read(), inputs.GeneratorBody).generator
    if generator is None:
        return middleware.error_response(400, "bad_request", "name the generator to start", "generator")
    return _json(await _svc(request).api.start_generator(_run_id(request), generator, by=_who(request)))


async def run_logs(request: web.Request) -> web.Response:
    """The run's generators' log lines after stream sequence ``since`` (the log panel)."""
    run_id = _run_id(request)
    generator = inputs.generator_id(request.query.get("generator"))
    since = inputs.since(request.query.get("since"))
    lines = await runlogs.after(_svc(request).nc.jetstream(), run_id, generator, since)
    return _json({"lines": [{"seq": seq, **msgspec.structs.asdict(line)} for seq, line in lines],
                  "last": lines[-1][0] if lines else since})


async def run_logs_text(request: web.Request) -> web.StreamResponse:
    """Every stored line of the run (or one generator), as a text file to download."""
    run_id = _run_id(request)
    generator = inputs.generator_id(request.query.get("generator"))
    name = f"{run_id}-{generator}.log" if generator else f"{run_id}.log"
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                           "Content-Disposition": f'attachment; filename="{name}"'})
    await response.prepare(request)
    async for line in runlogs.read(_svc(request).nc.jetstream(), run_id, generator):
        await response.write((runlogs.text(line) + "\n").encode())
    await response.write_eof()
    return response


async def _report(svc, run_id: str) -> Report:
    return msgspec.json.decode(await svc.api.report_bytes(run_id), type=Report)


async def report_get(request: web.Request) -> web.Response:
    report = await _report(_svc(request), _run_id(request))
    return _json(curves.view(report))


async def report_html_get(request: web.Request) -> web.Response:
    """The report as one self-contained page, downloaded (the UI's CSP would not style it inline)."""
    run_id = _run_id(request)
    page = html.render_html(await _report(_svc(request), run_id))
    return web.Response(text=page, content_type="text/html",
                        headers={"Content-Disposition": f'attachment; filename="{run_id}.html"'})


async def compare(request: web.Request) -> web.Response:
    query = inputs.compare_query(request.query.get("runs", ""))
    svc = _svc(request)
    results = await asyncio.gather(*(_report(svc, r) for r in query.runs), return_exceptions=True)
    for run_id, result in zip(query.runs, results):
        if isinstance(result, SurgeError):
            return middleware.error_response(result.status, result.code,
                                             f"{run_id}: {result.message}", "runs")
        if isinstance(result, BaseException):
            raise result
    return _json(curves.compare(list(results)))  # type: ignore[arg-type]


async def generators(request: web.Request) -> web.Response:
    body = await _svc(request).api.send_raw(api.GENERATORS_LIST, Empty())
    return web.Response(body=body, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    svc = _svc(request)
    return _json({"ok": True, "nats": svc.nc.is_connected, "browsers": len(svc.hub.clients),
                  "dropped": svc.hub.dropped_total})


async def healthz(request: web.Request) -> web.Response:
    """Probes, without the token: 200 while the UI serves. ``?ready``: 503 while NATS is down.

    Deliberately says nothing but ``ok`` and ``nats`` (no browsers, runs or versions).
    """
    connected = bool(_svc(request).nc.is_connected)
    ok = connected or "ready" not in request.query
    return _json({"ok": ok, "nats": connected}, status=200 if ok else 503)


def build_app(service) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[middleware.headers, middleware.errors,
                     middleware.make_access(service.config.ui_token)],
    )
    app[SERVICE] = service
    r = app.router
    r.add_get("/", _page("runs"))
    r.add_get("/new", _page("new"))
    r.add_get("/runs/{run_id}", _page("live", charts=True))
    r.add_get("/runs/{run_id}/report", _page("report", charts=True))
    r.add_get("/compare", _page("compare", charts=True))
    r.add_get("/generators", _page("generators"))
    r.add_get("/hosts", _page("hosts", charts=True))
    r.add_get("/login", login_form)
    r.add_post("/login", login_submit)
    r.add_post("/logout", logout)
    r.add_get("/ws", websocket)
    r.add_get("/api/session", session)
    r.add_get("/api/health", health)
    r.add_get("/healthz", healthz)
    r.add_get("/api/runs", runs_list)
    r.add_post("/api/runs", run_start)
    r.add_post("/api/plans/validate", plan_validate)
    r.add_post("/api/plans/send-once", plan_send_once)
    r.add_post("/api/plans/import", plan_import)
    r.add_get("/api/runs/{run_id}", run_get)
    r.add_post("/api/runs/{run_id}/rate", run_rate)
    r.add_post("/api/runs/{run_id}/stop", run_stop)
    r.add_post("/api/runs/{run_id}/start", run_generator_start)
    r.add_get("/api/runs/{run_id}/logs", run_logs)
    r.add_get("/api/runs/{run_id}/logs.txt", run_logs_text)
    r.add_get("/api/runs/{run_id}/report", report_get)
    r.add_get("/api/runs/{run_id}/report.html", report_html_get)
    r.add_get("/api/compare", compare)
    r.add_get("/api/generators", generators)
    r.add_get("/tests", _page("tests"))
    r.add_get("/builder", _page("builder"))
    r.add_get("/archive", _page("archive"))
    catalogue.add_routes(r)
    r.add_static("/static/", STATIC, append_version=False)
    return app
