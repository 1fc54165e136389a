"""Where the CLI connects and as whom, and every way that can fail, as one line each.

``settings`` picks the server and credentials: the global flags win, then the
SURGE_NATS_* variables, then the current context (``surge context``), then the
default local URL. A context is only a base when neither a flag nor SURGE_NATS_URL
names another server: its user, password and CA belong to its own server (naming the
context's own server, e.g. copied from `surge context show`, keeps it).

``connect`` is bounded by ``--timeout`` (nats-py would otherwise retry for ever) and
turns what nats-py and ssl raise into a ``CliError`` whose message names the server
and the fix; ``-v`` adds the underlying exception.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import sys
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import msgspec
import nats
import nats.errors
from nats.aio.client import Client

from schemas.errors import SurgeError, Unavailable
from services.common import contexts
from services.common.bus import connect_options
from services.common.client import CoordinatorClient
from services.common.config import DEFAULT_NATS_URL, NatsAuth, nats_auth


RECONNECT_FOR_S = 60.0  # a command connected once rides out a NATS restart this long


class CliError(SurgeError):
    """An expected failure on the user's side: one line, exit code 2."""

    code = "cli"

    def __init__(self, message: str, detail: str = "", code: str = "unavailable") -> None:
        super().__init__(message)
        self.detail = detail
        self.code = code


class Settings(msgspec.Struct, frozen=True):
    url: str
    auth: NatsAuth
    source: str  # where url/auth came from, for messages: "context local", "SURGE_NATS_*", ...
    password_file: str = ""
    context: str = ""  # the context the settings are exactly (no variable or flag on top)


def settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """The server and credentials one command uses (see the module docstring)."""
    env = os.environ if environ is None else environ
    name = getattr(args, "context", None) or env.get("SURGE_CONTEXT") or None
    url_given = getattr(args, "nats", None) or env.get("SURGE_NATS_URL") or ""
    base: contexts.Context | None = None
    if name:
        base = contexts.load(name, env)
    else:
        base = contexts.current(env)
        if base is not None and url_given and _addresses(url_given) != _addresses(base.url):
            base = None  # another server: the context's password and CA are not for it
    fields: dict[str, str] = {}
    source = "default"
    if base is not None:
        fields = {"url": base.url, "user": base.user, "password_file": base.password_file,
                  "creds": base.creds, "tls_ca": base.ca}
        source = f"context {base.name}"
    from_env = {k[len("SURGE_NATS_"):].lower(): v for k, v in env.items()
                if k.startswith("SURGE_NATS_") and v}
    if from_env:
        fields.update(from_env)
        source = "SURGE_NATS_*" if base is None else f"{source} + SURGE_NATS_*"
    flags = {"url": args.nats, "user": args.user, "password_file": args.password_file,
             "creds": args.creds, "tls_ca": args.ca}
    flags = {k: v for k, v in flags.items() if v}
    if flags:
        fields.update(flags)
        source = "flags" if source == "default" else f"{source} + flags"
    if "password_file" in flags:  # a file given on the command line beats SURGE_NATS_PASSWORD
        fields.pop("password", None)
    url = fields.pop("url", "") or DEFAULT_NATS_URL
    auth_env = {f"SURGE_NATS_{k.upper()}": v for k, v in fields.items()}
    try:
        auth = nats_auth(auth_env)
    except OSError as exc:
        raise CliError(f"cannot read the NATS password file {exc.filename}: {exc.strerror} "
                       f"({source}; fix: --password-file PATH or `surge context show`)",
                       code="bad_request") from None
    exact = base.name if base is not None and source == f"context {base.name}" else ""
    return Settings(url=url, auth=auth, source=source,
                    password_file=fields.get("password_file", ""), context=exact)


def _servers(url: str) -> list[str]:
    return [u.strip() for u in url.split(",") if u.strip()]


def _addresses(url: str) -> set[tuple[str, int]]:
    """The (host, port) pairs of a server list: nats://h:4222, tls://h:4222 and h are one."""
    out = set()
    for server in _servers(url):
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        try:
            port = parts.port or 4222
        except ValueError:
            port = -1
        out.add(((parts.hostname or "").lower(), port))
    return out


def _describe(exc: BaseException, s: Settings) -> CliError:
    """The one line for a failed connect."""
    where = f"NATS at {s.url}"
    detail = f"{type(exc).__name__}: {exc}"
    ca = s.auth.tls_ca or "the system's CA store"
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return CliError(
            f"TLS: {where} sent a certificate that {ca} did not sign "
            f"({getattr(exc, 'verify_message', '') or 'verify failed'}); fix: point --ca / "
            f"SURGE_NATS_TLS_CA at the CA of that server (`surge up` writes .surge/certs/ca.pem "
            f"and a context: `surge context use local`)", detail, "tls")
    if isinstance(exc, ssl.SSLError):
        return CliError(f"TLS with {where} failed ({exc.reason or exc}); is it a TLS server? "
                        f"fix: check --nats and --ca", detail, "tls")
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization" in str(exc).lower():
        who = f"user {s.auth.user!r}" if s.auth.user else (
            "the creds file" if s.auth.creds else "a client without credentials")
        return CliError(f"{where} refused {who} (authorization violation); fix: --user and "
                        f"--password-file, SURGE_NATS_USER/SURGE_NATS_PASSWORD_FILE, or "
                        f"`surge context use NAME` ({s.source})", detail, "auth")
    if isinstance(exc, asyncio.TimeoutError | nats.errors.TimeoutError):
        return CliError(f"{where} did not answer in time; check --nats URL (--timeout SECONDS "
                        f"to wait longer)", detail, "timeout")
    if isinstance(exc, ConnectionRefusedError):
        return CliError(f"cannot reach {where} ({s.source}): connection refused; is the stack up? "
                        f"(`make run` or `surge up`; else --nats URL or `surge context use NAME`)",
                        detail)
    if isinstance(exc, OSError):
        return CliError(f"cannot reach {where} ({s.source}): {exc.strerror or exc}; "
                        f"check --nats URL", detail)
    return CliError(f"cannot connect to {where}: {exc or type(exc).__name__}", detail)


def _is_fatal(exc: BaseException) -> bool:
    """Retrying cannot fix it: TLS, or the server refusing the credentials."""
    return isinstance(exc, ssl.SSLError | nats.errors.AuthorizationError) or (
        "authorization" in str(exc).lower())


class Violations:
    """Permission errors the server reports on this connection (it does not close it)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.changed = asyncio.Event()

    def add(self, text: str) -> None:
        self.seen.append(text)
        self.changed.set()


async def connect(s: Settings, timeout_s: float, name: str = "surge-cli") -> tuple[Client, Violations]:
    """A connected client within ``timeout_s``, or a ``CliError`` that says why not.

    Reconnects stay on once connected (a run being followed outlives a NATS blip).
    A TLS or auth failure ends the attempt at once: retrying cannot fix it.
    """
    nc = Client()
    servers = _servers(s.url)
    failures: list[BaseException] = []
    fatal = asyncio.Event()
    violations = Violations()

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            violations.add(str(exc))
            return
        failures.append(exc)
        refused = sum(isinstance(f, ConnectionRefusedError) for f in failures)
        if refused >= 3 * len(servers):  # nothing listens there: waiting will not change it
            fatal.set()
        if _is_fatal(exc):
            fatal.set()

    try:
        options = connect_options(s.auth)
    except (OSError, ssl.SSLError) as exc:  # an unreadable CA or client certificate
        raise CliError(f"cannot use the TLS files for NATS at {s.url}: {exc}; fix: --ca PATH "
                       f"({s.source})", f"{type(exc).__name__}: {exc}", "tls") from None
    attempt = asyncio.ensure_future(nc.connect(
        servers=servers, name=name, connect_timeout=max(1, int(min(timeout_s, 2))),
        allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
        error_cb=on_error, **options,
    ))
    stop = asyncio.ensure_future(fatal.wait())
    try:
        await asyncio.wait({attempt, stop}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
        # connected: a later blip is retried for about RECONNECT_FOR_S, then the command ends
        nc.options["reconnect_time_wait"] = 0.5
        nc.options["max_reconnect_attempts"] = int(RECONNECT_FOR_S / 0.5)
        return nc, violations
    if attempt.done() and not attempt.cancelled():
        failures.append(attempt.exception())
    attempt.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(nc.close()), 0.5)
    if failures:  # the telling one: the server's no (or TLS) beats the broken pipe after it
        telling = [f for f in failures if _is_fatal(f)]
        raise _describe((telling or failures)[-1], s)
    raise _describe(asyncio.TimeoutError(), s)


@contextlib.asynccontextmanager
async def open_api(args: argparse.Namespace) -> AsyncIterator[CoordinatorClient]:
    """A coordinator client for one command; a forbidden publish ends it with one line."""
    s = settings(args)
    nc, violations = await connect(s, args.timeout)
    api = CoordinatorClient(nc, args.timeout)
    task = asyncio.current_task()
    denied: list[str] = []
    warned: list[str] = []

    async def watch() -> None:
        while True:
            await violations.changed.wait()
            violations.changed.clear()
            for text in violations.seen:
                if text in denied or text in warned:
                    continue
                if "publish" in text.lower():
                    denied.append(text)
                    if task is not None:
                        task.cancel()
                else:  # a subscription the server refuses: the command goes on, without it
                    warned.append(text)
                    sys.stderr.write(f"warning: NATS at {s.url}: {text.strip()}\n")

    watcher = asyncio.ensure_future(watch())
    try:
        yield api
    except asyncio.CancelledError:
        if denied:
            raise permission_error(denied[-1], s) from None
        raise
    except Unavailable as err:  # no coordinator answering, or not in time: name the server
        hint = "; --timeout SECONDS waits longer" if "in time" in err.message else ""
        raise CliError(f"{err.message} (NATS at {s.url}, {s.source}){hint}", "",
                       "timeout" if hint else err.code) from None
    finally:
        watcher.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), 2)


def permission_error(text: str, s: Settings) -> CliError:
    subject = text.split('"')[1] if text.count('"') >= 2 else text
    who = f"user {s.auth.user!r}" if s.auth.user else "this client"
    return CliError(f"permission denied: NATS at {s.url} does not let {who} publish to {subject}; "
                    f"fix: use a user allowed to (the `cli` user of `surge up`, docs/security.md)",
                    text, "permission_denied")
