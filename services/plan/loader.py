"""Reading and checking plans: text or JSON in, a valid ``Plan`` or an ``InvalidPlan`` out.

Pure. Used by the coordinator (the authority, on ``run.start``/``plan.validate``) and by
the CLI (``surge validate`` works without a stack). Every error names the field as a
dotted path (``requests.1.method``) so people and the UI can point at it.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import re
from typing import Any
from urllib.parse import urlsplit

import msgspec
import yaml

from schemas.errors import InvalidPlan, TargetNotAllowed
from schemas.plan import Plan
from services.common.fields import field_of
from services.plan import scenarios

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
    for key in ("stages", "user_stages"):
        stages = out.get(key)
        if isinstance(stages, list):
            out[key] = [
                {**s, "duration": parse_duration(s["duration"], f"{key}.{i}.duration")}
                if isinstance(s, dict) and "duration" in s
                else s
                for i, s in enumerate(stages)
            ]
    th = out.get("thresholds")
    if isinstance(th, dict) and "abort_after" in th:
        th = out["thresholds"] = {**th, "abort_after": parse_duration(th["abort_after"], "thresholds.abort_after")}
    if isinstance(th, dict) and any(isinstance(v, dict) and k != "relative" and k != "requests"
                                    for k, v in th.items()):
        # `p99_ms: {max_increase_pct: 10}`: a limit against the baseline (docs/archive.md)
        relative = dict(th.get("relative") or {})
        relative.update({k: v for k, v in th.items() if isinstance(v, dict) and k not in ("relative", "requests")})
        out["thresholds"] = {**{k: v for k, v in th.items() if k not in relative}, "relative": relative}
    if isinstance(out.get("http2"), bool):  # YAML 1.1 reads `http2: off` as false
        out["http2"] = "off" if out["http2"] is False else "on"  # "on": not a choice, refused
    if isinstance(out.get("data"), dict):  # one feed may be written without a list
        out["data"] = [out["data"]]
    flows = out.get("flows")
    if isinstance(flows, list):
        out["flows"] = [
            {**f, "steps": _normalize_steps(f["steps"], f"flows.{i}.steps")}
            if isinstance(f, dict) and "steps" in f else f
            for i, f in enumerate(flows)
        ]
    setup = out.get("setup")
    if isinstance(setup, list):  # a bare list of steps: per-user setup
        setup = {"steps": setup}
    if isinstance(setup, dict) and "steps" in setup:
        out["setup"] = {**setup, "steps": _normalize_steps(setup["steps"], "setup.steps")}
    return out


def _normalize_steps(steps: Any, field: str) -> Any:
    if not isinstance(steps, list):
        return steps
    out = []
    for i, step in enumerate(steps):
        if isinstance(step, dict):
            step = dict(step)
            think = step.get("think")
            where = f"{field}.{i}.think"
            if isinstance(think, dict):
                step["think"] = {k: parse_duration(v, f"{where}.{k}") for k, v in think.items()}
            elif think is not None:
                step["think"] = parse_duration(think, where)
            check = step.get("check")
            if isinstance(check, dict) and isinstance(check.get("jsonpath"), dict):
                step["check"] = {**check, "jsonpath": [check["jsonpath"]]}
        out.append(step)
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


def _parse(text: str | bytes) -> Any:
    """YAML or JSON text (JSON is YAML) into plain data, bounded in size."""
    if len(text) > MAX_PLAN_BYTES:
        raise InvalidPlan(f"plan is larger than {MAX_PLAN_BYTES} bytes")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidPlan(f"not YAML or JSON: {exc}") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise InvalidPlan(f"unreadable plan text: {exc}") from None


def loads(text: str | bytes) -> Plan:
    """Parse YAML or JSON text into a valid Plan."""
    return from_obj(_parse(text))


def load(path: str) -> Plan:
    """A plan file, with its data feeds' files read and their rows embedded."""
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise InvalidPlan(f"cannot read plan file {path}: {exc.strerror}") from None
    return from_obj(embed_data(_parse(text), os.path.dirname(os.path.abspath(path))))


def embed_data(raw: Any, base_dir: str) -> Any:
    """Read each data feed's ``file`` (relative to the plan) into its ``rows``."""
    if not isinstance(raw, dict) or not raw.get("data"):
        return raw
    feeds = raw["data"] if isinstance(raw["data"], list) else [raw["data"]]
    out = []
    for i, feed in enumerate(feeds):
        if isinstance(feed, dict) and feed.get("file") and not feed.get("rows"):
            path = os.path.join(base_dir, feed["file"])
            delimiter = feed.get("delimiter", ",")
            if not isinstance(delimiter, str) or len(delimiter) != 1:
                raise InvalidPlan("delimiter is one character", f"data.{i}.delimiter")
            rows = read_rows(path, f"data.{i}.file", feed.get("columns") or None,
                             delimiter=delimiter, quoted=feed.get("quoted", True) is not False,
                             skip_first_line=feed.get("skip_first_line") is True)
            feed = {**feed, "rows": rows}
        out.append(feed)
    return {**raw, "data": out}


def decode_text(data: bytes, path: str, field: str) -> str:
    """A data file's text as people save it: UTF-8 with or without a byte-order mark
    (Excel's "CSV UTF-8" writes one), or UTF-16 with its mark (Excel's "Unicode text").
    Anything else is an error naming the file and the line of the first bad byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise InvalidPlan(f"{path}: not UTF-16 text after its byte-order mark", field) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InvalidPlan(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {col}); "
            "save the file as UTF-8", field) from None


def read_rows(path: str, field: str = "data.file", columns: list[str] | None = None, *,
              delimiter: str = ",", quoted: bool = True,
              skip_first_line: bool = False) -> list[dict[str, Any]]:
    """CSV (first line names the columns, unless ``columns`` does) or JSON lines.

    Read as people save them: CRLF or LF, quoted fields with delimiters, quotes and
    newlines inside, blank lines (a last empty line) skipped. A ``.json`` file may also
    be one array of objects."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise InvalidPlan(f"cannot read data file {path}: {exc.strerror}", field) from None
    if len(data) > MAX_PLAN_BYTES:
        raise InvalidPlan(f"data file {path} is larger than {MAX_PLAN_BYTES} bytes", field)
    text = decode_text(data, path, field)
    if path.endswith((".jsonl", ".ndjson", ".json")):
        return _json_rows(text, path, field)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    records: list[tuple[int, list[str]]] = []
    try:
        for rec in reader:
            if rec and not (len(rec) == 1 and not rec[0].strip()):  # blank lines
                records.append((reader.line_num, rec))
    except csv.Error as exc:
        raise InvalidPlan(f"{path}:{reader.line_num}: {exc}", field) from None
    if columns:
        names = list(columns)
        if skip_first_line:
            records = records[1:]
    elif records:
        names = records.pop(0)[1]
    else:
        raise InvalidPlan(f"data file {path} is empty", field)
    rows = []
    for line, rec in records:
        if len(rec) != len(names):
            raise InvalidPlan(f"{path}:{line}: {len(rec)} values for {len(names)} columns "
                              f"({delimiter!r} separates them)", field)
        rows.append(dict(zip(names, rec)))
    return rows


def _json_rows(text: str, path: str, field: str) -> list[dict[str, Any]]:
    if path.endswith(".json") and text.lstrip().startswith("["):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InvalidPlan(f"{path}: not JSON: {exc}", field) from None
        if not all(isinstance(r, dict) for r in doc):
            raise InvalidPlan(f"{path}: a JSON array of objects, one per row", field)
        return doc
    rows = []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may be in a string
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InvalidPlan(f"{path}:{n}: not JSON: {exc}", field) from None
        if not isinstance(row, dict):
            raise InvalidPlan(f"{path}:{n}: each line is a JSON object", field)
        rows.append(row)
    return rows


def check(plan: Plan) -> None:
    """Semantic rules msgspec types cannot express."""
    models = [k for k, v in (("rate", plan.rate is not None), ("stages", bool(plan.stages)),
                             ("users", plan.users is not None),
                             ("user_stages", bool(plan.user_stages))) if v]
    if len(models) != 1:
        raise InvalidPlan(
            "give either rate (with duration) or stages (open model), or users (with duration) "
            f"or user_stages (closed model), not both/neither; this plan has "
            f"{', '.join(models) or 'none'}", models[0] if models else "rate"
        )
    if (plan.rate is not None or plan.users is not None) and plan.duration is None:
        raise InvalidPlan(f"{models[0]} needs a duration", "duration")
    if (plan.stages or plan.user_stages) and plan.duration is not None:
        raise InvalidPlan("with stages the duration is the sum of the stages; drop it", "duration")
    parts = urlsplit(plan.target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidPlan("target must be http://host[:port] or https://host[:port]", "target")
    try:
        _ = parts.port
    except ValueError:
        raise InvalidPlan("target has an invalid port", "target") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidPlan("target is scheme://host:port only; put paths in requests", "target")
    if plan.http2 == "h2c" and parts.scheme != "http":
        raise InvalidPlan("http2: h2c is HTTP/2 without TLS, for an http:// target; an https:// "
                          "target gets HTTP/2 by ALPN with http2: auto", "http2")
    if plan.http2 == "h2c" and plan.proxy:
        raise InvalidPlan("http2: h2c does not go through a proxy (an HTTP proxy forwards "
                          "HTTP/1.1); drop the proxy or use http2: off", "http2")
    if bool(plan.requests) == bool(plan.flows):
        raise InvalidPlan("give either requests (static) or flows (scenarios), not both/neither",
                          "flows" if plan.flows else "requests")
    scenarios.check_names_and_weights(plan.requests, "request", "requests")
    _check_headers(plan.headers, "headers")
    for i, r in enumerate(plan.requests):
        if r.body is not None and r.json is not None:
            raise InvalidPlan("give body or json, not both", f"requests.{i}.body")
        _check_headers(r.headers, f"requests.{i}.headers")
    if plan.stages and all(s.target == 0 for s in plan.stages) and plan.start_rate == 0:
        raise InvalidPlan("every stage has target 0: nothing would be sent", "stages")
    if plan.user_stages and all(s.target < 1 for s in plan.user_stages):
        raise InvalidPlan("every user stage has fewer than 1 user: nothing would run", "user_stages")
    scenarios.check(plan)


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
        for key in ("stages", "start_rate", "users", "user_stages"):
            raw.pop(key, None)
        raw["rate"] = rate
        raw.setdefault("duration", duration if duration is not None else _plan_duration(plan))
    if duration is not None:
        if raw.get("stages") or raw.get("user_stages"):
            raise InvalidPlan("--duration applies to rate/users plans; this plan has stages", "duration")
        raw["duration"] = duration
    if generators is not None:  # a pool keeps its labels; only the count changes
        pool = raw.get("generators")
        raw["generators"] = {**pool, "count": generators} if isinstance(pool, dict) else generators
    return from_obj(raw)


def _plan_duration(plan: Plan) -> float:
    if plan.duration is not None:
        return plan.duration
    return sum(s.duration for s in plan.stages or plan.user_stages or [])
