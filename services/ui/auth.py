"""Access control: the UI token, the session cookie, CSRF and origin checks. Pure.

With ``SURGE_UI_TOKEN`` set, a request is let in with ``Authorization: Bearer <token>``
or the session cookie the login form sets (HttpOnly, SameSite=Strict). The cookie holds
an HMAC of the token, never the token itself. State-changing requests from a browser
carry the CSRF token (double submit: a readable cookie echoed in ``X-CSRF-Token``) and,
when the browser sends one, an ``Origin`` equal to the UI's own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

SESSION_COOKIE = "surge_session"
CSRF_COOKIE = "surge_csrf"
CSRF_HEADER = "X-CSRF-Token"
PUBLIC_PATHS = frozenset({"/login", "/healthz"})  # /healthz: Kubernetes probes, says nothing else


def session_value(token: str) -> str:
    """What the session cookie holds for ``token``: stable, unguessable without it."""
    return hmac.new(token.encode(), b"surge-ui-session-v1", hashlib.sha256).hexdigest()


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_ok(token: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def authenticated(token: str, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
    """True when no token is configured, or the request carries it (bearer or cookie)."""
    if not token:
        return True
    if token_ok(token, bearer(headers.get("Authorization"))):
        return True
    cookie = cookies.get(SESSION_COOKIE)
    return cookie is not None and hmac.compare_digest(cookie.encode(), session_value(token).encode())


def same_origin(origin: str | None, host: str | None) -> bool:
    """An absent Origin is fine (not a browser, or a same-origin GET); a different one is not."""
    if origin is None:
        return True
    if not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def csrf_ok(headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
    """A browser's POST must echo the CSRF cookie; a bearer client is not a browser."""
    if bearer(headers.get("Authorization")):
        return True
    sent = headers.get(CSRF_HEADER)
    cookie = cookies.get(CSRF_COOKIE)
    return bool(sent and cookie) and hmac.compare_digest(sent.encode(), cookie.encode())
