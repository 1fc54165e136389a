"""Reading and checking plans: text or JSON in, a valid ``Plan`` or an ``InvalidPlan`` out.

Pure. Used by the coordinator (the authority, on ``run.start``/``plan.validate``) and by
the CLI (``surge validate`` works without a stack). Every error names the field as a
dotted path (``requests.1.method``) so people and the UI can point at it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import msgspec
import yaml

from schemas.errors import InvalidPlan, TargetNotAllowed
from schemas.plan import Plan
from services.common.fields import field_of

_DURATION_KEYS = {"duration", "timeout"}
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
MAX_PLAN_BYTES = 4 * 1024 * 1024


def parse_duration(value: Any, field: str) -> Any:
    """'1m30s' -> 90.0; numbers pass through (seconds); anything else is left for msgspec."""
    if not isinstance(value, str):
        return value
    text = value.strip().replace(" ", "")
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidPlan(f"not a duration: {value!r} (use e.g. 30s, 2m, 1m30s, 500ms)", field)
    return total


def _normalize(raw: Any) -> Any:
    """Turn duration strings into seconds where the plan format allows them."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    for key in _DURATION_KEYS & out.keys():
        out[key] = parse_duration(out[key], key)
    stages = out.get("stages")
    if isinstance(stages, list):
        out["stages"] = [
            {**s, "duration": parse_duration(s["duration"], f"stages.{i}.duration")}
            if isinstance(s, dict) and "duration" in s
            else s
            for i, s in enumerate(stages)
        ]
    return out


def from_obj(raw: Any) -> Plan:
    """Validate a decoded plan (dict from YAML/JSON) into a Plan, or raise InvalidPlan."""
    if not isinstance(raw, dict):
        raise InvalidPlan(f"a plan is an object/mapping, not {type(raw).__name__}")
    try:
        plan = msgspec.convert(_normalize(raw), Plan, strict=False)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        raise InvalidPlan(msg, field_of(msg)) from None
    check(plan)
    return plan


def loads(text: str | bytes) -> Plan:
    """Parse YAML or JSON text (JSON is YAML) into a valid Plan."""
    if len(text) > MAX_PLAN_BYTES:
        raise InvalidPlan(f"plan is larger than {MAX_PLAN_BYTES} bytes")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidPlan(f"not YAML or JSON: {exc}") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise InvalidPlan(f"unreadable plan text: {exc}") from None
    return from_obj(raw)


def load(path: str) -> Plan:
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise InvalidPlan(f"cannot read plan file {path}: {exc.strerror}") from None
    return loads(text)


def check(plan: Plan) -> None:
    """Semantic rules msgspec types cannot express."""
    has_rate = plan.rate is not None
    if has_rate == bool(plan.stages):
        raise InvalidPlan("give either rate (with duration) or stages, not both/neither", "rate")
    if has_rate and plan.duration is None:
        raise InvalidPlan("rate needs a duration", "duration")
    if plan.stages and plan.duration is not None:
        raise InvalidPlan("with stages the duration is the sum of the stages; drop it", "duration")
    parts = urlsplit(plan.target)
    if parts.scheme != "http" or not parts.hostname:
        raise InvalidPlan("target must be http://host[:port] (https arrives later)", "target")
    try:
        _ = parts.port
    except ValueError:
        raise InvalidPlan("target has an invalid port", "target") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidPlan("target is scheme://host:port only; put paths in requests", "target")
    names = [r.name for r in plan.requests]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InvalidPlan(f"request name {name!r} is used twice", f"requests.{i}.name")
    if sum(r.weight for r in plan.requests) <= 0:
        raise InvalidPlan("at least one request needs a weight above 0", "requests.0.weight")
    _check_headers(plan.headers, "headers")
    for i, r in enumerate(plan.requests):
        if r.body is not None and r.json is not None:
            raise InvalidPlan("give body or json, not both", f"requests.{i}.body")
        _check_headers(r.headers, f"requests.{i}.headers")
    if plan.stages and all(s.target == 0 for s in plan.stages) and plan.start_rate == 0:
        raise InvalidPlan("every stage has target 0: nothing would be sent", "stages")


_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")  # latin-1, no control characters


def _check_headers(headers: dict[str, str], field: str) -> None:
    for key, value in headers.items():
        if not _HEADER_NAME.match(key):
            raise InvalidPlan(f"invalid header name {key!r}", f"{field}.{key}")
        if not _HEADER_VALUE.match(value):
            raise InvalidPlan(f"header {key!r} has characters HTTP cannot carry", f"{field}.{key}")


def check_target_allowed(plan: Plan, allow: list[str]) -> None:
    """Refuse targets outside the allowlist (CIDRs or host names, ``*`` wildcards)."""
    host = urlsplit(plan.target).hostname or ""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    for rule in allow:
        if rule == "*":
            return
        if addr is not None:
            try:
                if addr in ipaddress.ip_network(rule, strict=False):
                    return
            except ValueError:
                pass
        if _host_matches(host, rule):
            return
    raise TargetNotAllowed(
        f"target host {host!r} is not in SURGE_TARGET_ALLOW ({', '.join(allow) or 'empty'})",
        "target",
    )


def _host_matches(host: str, rule: str) -> bool:
    pattern = "^" + re.escape(rule.lower()).replace(r"\*", "[^.]*") + "$"
    return re.match(pattern, host.lower()) is not None


def with_overrides(
    plan: Plan, rate: float | None = None, duration: float | None = None, generators: int | None = None
) -> Plan:
    """Apply command-line overrides; the result is validated again."""
    raw = msgspec.to_builtins(plan)
    if rate is not None:
        raw.pop("stages", None)
        raw.pop("start_rate", None)
        raw["rate"] = rate
        raw.setdefault("duration", duration if duration is not None else _plan_duration(plan))
    if duration is not None:
        if raw.get("stages"):
            raise InvalidPlan("--duration applies to rate plans; this plan has stages", "duration")
        raw["duration"] = duration
    if generators is not None:
        raw["generators"] = generators
    return from_obj(raw)


def _plan_duration(plan: Plan) -> float:
    if plan.duration is not None:
        return plan.duration
    return sum(s.duration for s in plan.stages or [])
