"""Middleware: errors as JSON, access control, CSRF/origin checks, security headers.

Every failure a browser can cause comes back as ``{"error": {"code", "message",
"field"}}`` with a matching status; anything unexpected is logged with its traceback
and answered 500 — a bad request never takes the UI down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import structlog
from aiohttp import web

from schemas.errors import ErrorBody, ErrorReply, SurgeError
from services.ui import auth

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def error_response(status: int, code: str, message: str, field: str | None = None,
                   **extra: object) -> web.Response:
    body = msgspec.to_builtins(ErrorReply(ErrorBody(code=code, message=message, field=field)))
    body["error"].update(extra)
    return web.json_response(body, status=status)


def _wants_html(request: web.Request) -> bool:
    return not request.path.startswith(("/api/", "/ws")) and request.method == "GET"


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SurgeError as err:
        status = err.status if 400 <= err.status < 600 else 500
        return error_response(status, err.code, err.message, err.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status, "bad_request")
        return error_response(exc.status, code, exc.reason)
    except Exception as exc:
        log.exception("request failed", path=request.path, method=request.method)
        return error_response(500, "internal", f"internal error: {type(exc).__name__}")


def make_access(token: str) -> Callable:
    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in auth.PUBLIC_PATHS:
            return await handler(request)
        if not auth.authenticated(token, request.headers, request.cookies):
            if _wants_html(request):
                raise web.HTTPFound("/login")
            return error_response(401, "unauthorized", "sign in or send Authorization: Bearer <token>")
        if request.method in UNSAFE_METHODS or request.path == "/ws":
            if not auth.same_origin(request.headers.get("Origin"), request.host):
                return error_response(403, "bad_origin", "request from another origin refused")
        if request.method in UNSAFE_METHODS and not auth.csrf_ok(request.headers, request.cookies):
            return error_response(403, "csrf", f"missing or wrong {auth.CSRF_HEADER} header")
        return await handler(request)

    return access


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    if auth.CSRF_COOKIE not in request.cookies and not response.prepared:
        response.set_cookie(auth.CSRF_COOKIE, auth.new_csrf(), samesite="Strict", path="/")
    return response
