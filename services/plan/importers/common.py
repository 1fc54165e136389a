"""What every importer shares: the plan being built, the notes on what was not mapped.

Importers are pure: text in, ``Imported`` out (a plan as plain data plus a list of
everything that could not be mapped). Nothing is dropped silently: each item an
importer skips or approximates is one line in ``unmapped``, written at the top of
the plan file and printed by ``surge import``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

# computed by the client, the connection or the cookie jar: never copied into a plan
DROP_HEADERS = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade",
    "accept-encoding", "te", "proxy-connection", "http2-settings",
})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.:\-/ ]+")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")


class ImportError_(ValueError):
    """The input cannot be read at all (not the format it claims to be)."""


@dataclass
class Imported:
    plan: dict[str, Any]
    unmapped: list[str] = field(default_factory=list)

    def to_yaml(self, source: str) -> str:
        head = [f"# Imported by `surge import` from {source}."]
        if self.unmapped:
            head.append("# Review by hand (not mapped, or mapped by a guess):")
            head += [f"#   - {line}" for line in self.unmapped]
        else:
            head.append("# Everything in the source was mapped.")
        body = yaml.safe_dump(self.plan, sort_keys=False, allow_unicode=True, width=110)
        return "\n".join(head) + "\n" + body


def origin_of(url: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc.rsplit("@", 1)[-1], "", "", ""))


def path_of(url: str) -> str:
    p = urlsplit(url)
    path = p.path or "/"
    return path + (f"?{p.query}" if p.query else "")


def main_origin(urls: list[str]) -> str | None:
    """The origin most requests go to (the plan's target)."""
    origins = Counter(origin_of(u) for u in urls if urlsplit(u).scheme in ("http", "https"))
    return origins.most_common(1)[0][0] if origins else None


def step_name(method: str, path: str, taken: set[str], hint: str | None = None) -> str:
    """A readable, unique request name that fits the plan's name rules."""
    base = hint or f"{method} {path.split('?', 1)[0]}"
    base = _NAME_BAD.sub("_", base).strip()[:90] or method
    name, n = base, 2
    while name in taken:
        name, n = f"{base} {n}", n + 1
    taken.add(name)
    return name


def clean_headers(headers: list[tuple[str, str]], where: str, unmapped: list[str],
                  host: str | None = None) -> dict[str, str]:
    """Headers a plan can send. Transport headers are the engine's own; a ``Host`` header
    naming another host than the request's (``host``) is listed: the engine sends the target's."""
    out: dict[str, str] = {}
    for name, value in headers:
        low = name.lower()
        if low == "host" and host is not None and value.strip().lower() != host.lower():
            unmapped.append(f"{where}: Host header {value!r} not sent (the engine sends the target's "
                            f"host {host!r}; point the target at the right address instead)")
            continue
        if name.startswith(":") or low in DROP_HEADERS:
            continue
        if low == "cookie":
            unmapped.append(f"{where}: Cookie header dropped (each virtual user's cookie jar "
                            "carries the cookies the target sets)")
            continue
        if not _HEADER_NAME.match(name) or not _HEADER_VALUE.match(value):
            unmapped.append(f"{where}: header {name!r} has characters HTTP cannot carry; dropped")
            continue
        out[name] = value
    return out


def finish(
    plan: dict[str, Any], *, target: str | None, rate: float | None, users: int | None,
    duration: str | None, default_users: int = 1, default_duration: str = "30s",
) -> dict[str, Any]:
    """Apply command-line choices (target, load model) over what the importer found."""
    if target:
        plan["target"] = target.rstrip("/")
    if rate is not None or users is not None:
        for key in ("rate", "stages", "users", "user_stages", "duration"):
            plan.pop(key, None)
        if rate is not None:
            plan["rate"] = rate
        else:
            plan["users"] = users
    if not any(k in plan for k in ("rate", "stages", "users", "user_stages")):
        plan["users"] = default_users
    if duration:
        plan.pop("user_stages", None) if "users" in plan else None
        plan["duration"] = duration
    if ("rate" in plan or "users" in plan) and "duration" not in plan:
        plan["duration"] = default_duration
    order = ["name", "description", "target", "rate", "stages", "users", "user_stages", "duration",
             "timeout", "headers", "vars", "data", "insecure", "proxy", "setup", "flows",
             "requests", "thresholds"]
    return {k: plan[k] for k in order if k in plan} | {k: v for k, v in plan.items() if k not in order}
