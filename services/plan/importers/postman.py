"""Postman collections (format v2.0/v2.1) → a plan.

Requests (folders flattened, in order) become the steps of one flow; collection
variables become plan ``vars`` (Postman's ``{{var}}`` is Surge's syntax too); a
``{{baseUrl}}``-style origin becomes the target. Bearer and basic auth become
headers. The common test-script lines are mapped: ``pm.response.to.have.status(N)``
→ a status check, ``pm.expect(...).to.include("x")`` on the body → contains, and
``pm.*Variables.set("v", <json>.a.b)`` → a JSONPath extraction; every other script
line is listed, as are pre-request scripts and body modes Surge cannot send.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlsplit

from services.plan.importers.common import (
    METHODS, ImportError_, Imported, clean_headers, main_origin, origin_of, path_of, step_name,
)

_DYNAMIC = {"$guid": "$uuid", "$randomUUID": "$uuid", "$timestamp": "$timestamp",
            "$randomInt": "$randint(0,1000)"}
_STATUS = re.compile(r"pm\.response\.to\.have\.status\((\d{3})\)")
_INCLUDE = re.compile(r"pm\.expect\(\s*pm\.response\.text\(\)\s*\)\.to\.include\(\s*(['\"])(.*?)\1\s*\)")
_SET = re.compile(
    r"pm\.(?:collectionVariables|environment|globals|variables)\.set\(\s*(['\"])(\w+)\1\s*,\s*"
    r"(?:pm\.response\.json\(\)|\w+)((?:\.\w+|\[\d+\])+)\s*\)"
)
_JSON_VAR = re.compile(r"(?:var|let|const)\s+\w+\s*=\s*pm\.response\.json\(\)\s*;?")
_NOISE = re.compile(r"^\s*(?://.*|pm\.test\(.*function\s*\(\)\s*\{|pm\.test\(.*=>\s*\{|\}\);?|\s*)$")


def _dynamic(text: str, unmapped: list[str], where: str) -> str:
    def sub(m: re.Match) -> str:
        ref = m.group(1).strip()
        if ref.startswith("$"):
            if ref in _DYNAMIC:
                return "{{" + _DYNAMIC[ref] + "}}"
            unmapped.append(f"{where}: Postman dynamic variable {{{{{ref}}}}} has no Surge "
                            "equivalent; replaced by {{$randstr(8)}}")
            return "{{$randstr(8)}}"
        return m.group(0)

    return re.sub(r"\{\{([^{}]+)\}\}", sub, text)


def _items(items: list[dict], prefix: str = "") -> list[tuple[str, dict]]:
    out = []
    for it in items:
        if "item" in it:
            out += _items(it["item"], f"{prefix}{it.get('name', 'folder')}/")
        elif "request" in it:
            out.append((f"{prefix}{it.get('name', 'request')}", it))
    return out


def _url(req: dict, variables: dict[str, str]) -> str:
    url = req.get("url", "")
    if isinstance(url, dict):
        url = url.get("raw") or ""
    for k, v in variables.items():  # an origin held in a variable ({{baseUrl}})
        url = url.replace("{{" + k + "}}", v) if url.startswith("{{" + k + "}}") else url
    return url


def _script_lines(item: dict, listen: str) -> list[str]:
    lines = []
    for ev in item.get("event", []) or []:
        if ev.get("listen") == listen:
            exec_ = (ev.get("script") or {}).get("exec") or []
            lines += [exec_] if isinstance(exec_, str) else list(exec_)
    return lines


def _tests(lines: list[str], step: dict, unmapped: list[str], where: str) -> None:
    check: dict[str, Any] = {}
    extract: dict[str, Any] = {}
    for line in lines:
        if m := _STATUS.search(line):
            check["status"] = int(m.group(1))
        elif m := _INCLUDE.search(line):
            check["contains"] = m.group(2)
        elif m := _SET.search(line):
            path = "$" + m.group(3)
            extract[m.group(2)] = {"jsonpath": path}
        elif _JSON_VAR.search(line) or _NOISE.match(line):
            continue
        else:
            unmapped.append(f"{where}: test script line not mapped: {line.strip()[:100]}")
    if check:
        step["check"] = check
    if extract:
        step["extract"] = extract


def convert(text: str, name: str | None = None, environment: str | None = None) -> Imported:
    try:
        coll = json.loads(text)
        info, items = coll["info"], coll["item"]
    except (ValueError, KeyError, TypeError):
        raise ImportError_("not a Postman collection (expected {\"info\": ..., \"item\": [...]})") from None
    unmapped: list[str] = []
    variables = {v["key"]: str(v.get("value", "")) for v in coll.get("variable", []) or []
                 if v.get("key") and not v.get("disabled")}
    if environment:
        try:  # an environment's values win over the collection's, as in Postman and newman
            env = json.loads(environment)
            variables |= {v["key"]: str(v.get("value", "")) for v in env.get("values", []) or []
                          if v.get("key") and v.get("enabled", True)}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ImportError_("not a Postman environment (expected {\"values\": [...]})") from None
    origin_vars = {k: v for k, v in variables.items() if urlsplit(v).scheme in ("http", "https")}
    requests = _items(items)
    urls = [_url(it["request"], origin_vars) for _, it in requests]
    target = main_origin(urls)
    if target is None:
        raise ImportError_("no request with an http(s) URL in the collection")
    plan_vars = {k: v for k, v in variables.items() if k not in origin_vars
                 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)}
    coll_auth = coll.get("auth")
    steps, taken = [], set()
    for (label, item), url in zip(requests, urls):
        req = item["request"]
        where = f"request {label!r}"
        if isinstance(req, str):
            req = {"url": req}
        method = str(req.get("method", "GET")).upper()
        if origin_of(url) != target:
            unmapped.append(f"{where}: {url[:80]} is another origin than {target}; not sent")
            continue
        if method not in METHODS:
            unmapped.append(f"{where}: method {method} is not supported; skipped")
            continue
        step: dict[str, Any] = {"name": step_name(method, "", taken, hint=label), "method": method,
                                "path": _dynamic(path_of(url), unmapped, where)}
        hdrs = [(h.get("key", ""), _dynamic(str(h.get("value", "")), unmapped, where))
                for h in req.get("header", []) or [] if not h.get("disabled")]
        auth = req.get("auth") or coll_auth
        if auth:
            kind = auth.get("type")
            params = {p.get("key"): p.get("value") for p in auth.get(kind, []) or []} if kind else {}
            if kind == "bearer":
                hdrs.append(("Authorization", f"Bearer {params.get('token', '')}"))
            elif kind == "basic":
                pair = f"{params.get('username', '')}:{params.get('password', '')}"
                hdrs.append(("Authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
            elif kind not in (None, "noauth"):
                unmapped.append(f"{where}: auth type {kind} is not supported")
        body = req.get("body") or {}
        mode = body.get("mode")
        if mode == "raw" and body.get("raw"):
            raw = _dynamic(body["raw"], unmapped, where)
            lang = ((body.get("options") or {}).get("raw") or {}).get("language")
            try:
                step["json"] = json.loads(raw) if lang == "json" or raw.lstrip()[:1] in "{[" else None
            except ValueError:
                step["json"] = None
            if step["json"] is None:
                del step["json"]
                step["body"] = raw
            else:
                hdrs = [(k, v) for k, v in hdrs if k.lower() != "content-type"]
        elif mode == "urlencoded":
            pairs = [f"{p.get('key')}={p.get('value', '')}" for p in body.get("urlencoded", [])
                     if not p.get("disabled")]
            step["body"] = _dynamic("&".join(pairs), unmapped, where)
            if not any(k.lower() == "content-type" for k, _ in hdrs):
                hdrs.append(("Content-Type", "application/x-www-form-urlencoded"))
        elif mode and mode != "none":
            unmapped.append(f"{where}: body mode {mode} is not supported; body left out")
        headers = clean_headers(hdrs, where, unmapped)
        if headers:
            step["headers"] = headers
        _tests(_script_lines(item, "test"), step, unmapped, where)
        if _script_lines(item, "prerequest"):
            unmapped.append(f"{where}: pre-request script not run")
        steps.append(step)
    if not steps:
        raise ImportError_(f"no request to {target} could be mapped")
    plan: dict[str, Any] = {"name": re.sub(r"[^A-Za-z0-9_.:\-/ ]+", "_", name or info.get("name") or "postman")[:100],
                            "target": target, "timeout": "10s"}
    if plan_vars:
        plan["vars"] = plan_vars
    plan["flows"] = [{"name": "collection", "steps": steps}]
    return Imported(plan, unmapped)
