"""Saved connection contexts, as kubectl and the ``nats`` CLI keep them.

A context names a NATS server and how to log in to it (user + password file, or a
creds file, and the CA that signed the server's certificate). They live under the
user's config directory, one JSON file each::

    $XDG_CONFIG_HOME/surge/contexts/<name>.json   (default ~/.config/surge)
    $XDG_CONFIG_HOME/surge/current                 the current context's name

``surge up`` writes the context ``local`` and makes it current, so any shell (and the
UI started on its own) reaches the local stack without exported variables. Paths in a
context are absolute; the password stays in its own file, never in the context.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import msgspec

from schemas.errors import BadRequest, NotFound

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Context(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One saved connection: where the NATS is, and how to log in to it."""

    name: str
    url: str
    user: str = ""
    password_file: str = ""  # absolute path; the password itself is never stored here
    creds: str = ""
    ca: str = ""  # absolute path of the CA that signed the server's certificate
    description: str = ""


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"),
                                                      ".config")
    return Path(base) / "surge"


def _path(name: str, environ: Mapping[str, str] | None) -> Path:
    if not NAME_RE.match(name):
        raise BadRequest(f"bad context name {name!r} (letters, digits, '.', '_', '-')", "name")
    return config_dir(environ) / "contexts" / f"{name}.json"


def save(ctx: Context, environ: Mapping[str, str] | None = None, make_current: bool = False) -> Path:
    path = _path(ctx.name, environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(ctx)) + b"\n")
    os.replace(tmp, path)
    if make_current:
        use(ctx.name, environ)
    return path


def load(name: str, environ: Mapping[str, str] | None = None) -> Context:
    path = _path(name, environ)
    try:
        return msgspec.json.decode(path.read_bytes(), type=Context)
    except FileNotFoundError:
        known = ", ".join(names(environ)) or "none yet; `surge up` writes `local`"
        raise NotFound(f"no context {name!r} (known: {known})", "context") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadRequest(f"context file {path} is broken: {exc}", "context") from None


def names(environ: Mapping[str, str] | None = None) -> list[str]:
    folder = config_dir(environ) / "contexts"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


def current_name(environ: Mapping[str, str] | None = None) -> str | None:
    try:
        name = (config_dir(environ) / "current").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return name or None


def current(environ: Mapping[str, str] | None = None) -> Context | None:
    """The current context, or None when there is none (or it was deleted)."""
    name = current_name(environ)
    if name is None:
        return None
    try:
        return load(name, environ)
    except NotFound:
        return None


def use(name: str, environ: Mapping[str, str] | None = None) -> Context:
    ctx = load(name, environ)
    path = config_dir(environ) / "current"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name + "\n", encoding="utf-8")
    return ctx


def nats_cli_name(ctx: Context) -> str:
    return f"surge-{ctx.name}"


def nats_cli_path(ctx: Context, environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ).parent / "nats" / "context" / f"{nats_cli_name(ctx)}.json"


def save_nats_cli(ctx: Context, environ: Mapping[str, str] | None = None) -> Path:
    """The same connection as a context of the ``nats`` CLI (``nats --context surge-<name>``).

    The nats CLI keeps the password itself in its context file, so this one is 0600;
    it is not made the nats CLI's current context (that choice stays the user's).
    """
    password = ""
    if ctx.password_file:
        with open(ctx.password_file, encoding="utf-8") as f:
            password = f.read().strip()
    body = {"description": f"Surge: {ctx.description or ctx.name}", "url": ctx.url,
            "user": ctx.user, "password": password, "creds": ctx.creds, "ca": ctx.ca}
    path = nats_cli_path(ctx, environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.json.format(msgspec.json.encode(body)) + b"\n")
    return path


def as_env(ctx: Context) -> dict[str, str]:
    """The SURGE_NATS_* variables that say what ``ctx`` says."""
    env = {"SURGE_NATS_URL": ctx.url, "SURGE_NATS_USER": ctx.user,
           "SURGE_NATS_PASSWORD_FILE": ctx.password_file, "SURGE_NATS_CREDS": ctx.creds,
           "SURGE_NATS_TLS_CA": ctx.ca}
    return {k: v for k, v in env.items() if v}


def fallback_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """For a service started by hand (the UI): the current context's SURGE_NATS_* when
    no SURGE_NATS_* variable is set at all; else nothing (the variables say it all)."""
    env = os.environ if environ is None else environ
    if any(k.startswith("SURGE_NATS_") for k in env):
        return {}
    ctx = current(env)
    return as_env(ctx) if ctx is not None else {}


def remove(name: str, environ: Mapping[str, str] | None = None) -> None:
    """Forget a context (and stop it being current); the files it names stay."""
    load(name, environ)  # NotFound names the known ones
    _path(name, environ).unlink()
    if current_name(environ) == name:
        (config_dir(environ) / "current").unlink(missing_ok=True)
