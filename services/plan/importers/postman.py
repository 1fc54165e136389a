"""Postman collections (format v2.0/v2.1) → a plan that sends what newman sends.

Checked against newman itself (tests/integration/test_import_oracles.py). Mapped:

* requests, folders flattened in order, into the steps of one flow;
* variables as newman resolves them: collection variables, an environment's
  (``--environment``, which wins), variables built from others (``{{baseUrl}}`` =
  ``{{scheme}}://{{host}}``), resolved into the request; a variable a test script sets
  (``pm.*Variables.set("v", json.a.b)``) stays ``{{v}}`` and is extracted instead;
* the URL as newman builds it from its parts: host, path with ``:name`` path variables,
  enabled query parameters, each encoded as newman does;
* bodies: raw (text as written; JSON, text, XML, ... with newman's content type),
  urlencoded (enabled pairs, percent-encoded), form-data (text and file parts, a fixed
  boundary); auth: basic, bearer, API key (header or query), inherited from folders and
  the collection, ``noauth`` stopping the inheritance;
* test-script lines ``pm.response.to.have.status(N)``, ``pm.expect(pm.response.text())
  .to.include("x")`` → checks; ``{{$guid}}``, ``{{$randomInt}}``, ``{{$timestamp}}``.

Listed: every other script line, pre-request scripts (at any level), other auth types,
body modes file/graphql, and anything that could not be read.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
from typing import Any
from urllib.parse import quote, urlsplit

from services.plan.importers.common import (
    METHODS, ImportError_, Imported, clean_headers, main_origin, origin_of, step_name,
)

BOUNDARY = "--------------------------surgeimport000000000"  # newman's shape, fixed
_DYNAMIC = {"$guid": "$uuid", "$randomUUID": "$uuid", "$timestamp": "$timestamp",
            "$randomInt": "$randint(0,1000)"}
_SURGE = set(_DYNAMIC.values()) | {"$randstr(8)"}
_STATUS = re.compile(r"pm\.response\.to\.have\.status\((\d{3})\)")
_INCLUDE = re.compile(r"pm\.expect\(\s*pm\.response\.text\(\)\s*\)\.to\.include\(\s*(['\"])(.*?)\1\s*\)")
_SET = re.compile(
    r"pm\.(?:collectionVariables|environment|globals|variables)\.set\(\s*(['\"])(\w+)\1\s*,\s*"
    r"(?:pm\.response\.json\(\)|\w+)((?:\.\w+|\[\d+\])+)\s*\)"
)
_JSON_VAR = re.compile(r"(?:var|let|const)\s+\w+\s*=\s*pm\.response\.json\(\)\s*;?")
_NOISE = re.compile(r"^\s*(?://.*|pm\.test\(.*function\s*\(\)\s*\{|pm\.test\(.*=>\s*\{|\}\);?|\s*)$")
_REF = re.compile(r"\{\{([^{}]+)\}\}")
_RAW_TYPES = {"json": "application/json", "text": "text/plain", "javascript": "application/javascript",
              "html": "text/html", "xml": "application/xml"}
# what newman (postman-url-encoder) leaves as is in each part of a URL
_PATH_SAFE = "!$&'()*+,;=:@/-._~%"
_QUERY_SAFE = "!$'()*+,;=:@/?-._~%"
_QUERY_KEY_SAFE = "!$'()*+,;:@/?-._~%"


def _encode(text: str, safe: str) -> str:
    """Percent-encode as newman does, leaving ``{{var}}`` references for the engine."""
    out, pos = [], 0
    for m in _REF.finditer(text):
        out.append(quote(text[pos:m.start()], safe=safe))
        out.append(m.group(0))
        pos = m.end()
    out.append(quote(text[pos:], safe=safe))
    return "".join(out)


class _Vars:
    """Static variables (collection < environment), resolved as newman resolves them."""

    def __init__(self, values: dict[str, str], runtime: set[str], unmapped: list[str]) -> None:
        self.values, self.runtime, self.unmapped = values, runtime, unmapped

    def __call__(self, text: str, where: str) -> str:
        for _ in range(10):  # variables built from variables, as deep as newman goes
            new = _REF.sub(lambda m: self._one(m, where), text)
            if new == text:
                break
            text = new
        return text

    def _one(self, m: re.Match, where: str) -> str:
        ref = m.group(1).strip()
        if ref.startswith("$"):
            if ref in _SURGE:  # already mapped on an earlier pass
                return m.group(0)
            if ref in _DYNAMIC:
                return "{{" + _DYNAMIC[ref] + "}}"
            self.unmapped.append(f"{where}: Postman dynamic variable {{{{{ref}}}}} has no Surge "
                                 "equivalent; replaced by {{$randstr(8)}}")
            return "{{$randstr(8)}}"
        if ref in self.values and ref not in self.runtime:
            return self.values[ref]
        return m.group(0)  # set at run time (extracted), or never set (declared, listed)


def _items(items: list[dict], prefix: str, auth: dict | None, unmapped: list[str]) -> list[tuple[str, dict, dict | None]]:
    out = []
    for it in items:
        if "item" in it:
            folder = f"{prefix}{it.get('name', 'folder')}"
            if _script_lines(it, "prerequest") or _script_lines(it, "test"):
                unmapped.append(f"folder {folder!r}: its scripts are not run")
            out += _items(it["item"], f"{folder}/", it.get("auth") or auth, unmapped)
        elif "request" in it:
            out.append((f"{prefix}{it.get('name', 'request')}", it, auth))
    return out


def _script_lines(item: dict, listen: str) -> list[str]:
    lines = []
    for ev in item.get("event", []) or []:
        if ev.get("listen") == listen and not ev.get("disabled"):
            exec_ = (ev.get("script") or {}).get("exec") or []
            lines += [exec_] if isinstance(exec_, str) else list(exec_)
    return [line for line in lines if line.strip()]


def _tests(lines: list[str], step: dict, unmapped: list[str], where: str) -> None:
    check: dict[str, Any] = {}
    extract: dict[str, Any] = {}
    for line in lines:
        if m := _STATUS.search(line):
            check["status"] = int(m.group(1))
        elif m := _INCLUDE.search(line):
            check["contains"] = m.group(2)
        elif m := _SET.search(line):
            extract[m.group(2)] = {"jsonpath": "$" + m.group(3)}
        elif _JSON_VAR.search(line) or _NOISE.match(line):
            continue
        else:
            unmapped.append(f"{where}: test script line not mapped: {line.strip()[:100]}")
    if check:
        step["check"] = check
    if extract:
        step["extract"] = extract


def _url(url: Any, res: _Vars, where: str) -> tuple[str, str]:
    """(origin, path and query as newman sends them)."""
    if isinstance(url, str) or not (url.get("host") or url.get("path")):
        raw = url if isinstance(url, str) else url.get("raw") or ""
        raw = res(raw.split("#", 1)[0], where)
        base, _, query = raw.partition("?")
        pairs = [tuple(p.split("=", 1)) if "=" in p else (p, None) for p in query.split("&") if p]
        if "://" not in base:
            base = "http://" + base
        parts = urlsplit(base)
        origin, path, pvars = f"{parts.scheme}://{parts.netloc}", parts.path or "/", {}
    else:
        host = res(".".join(url["host"]) if isinstance(url.get("host"), list) else str(url.get("host", "")), where)
        if url.get("protocol"):
            host = f"{url['protocol']}://{host}"
        if url.get("port"):
            host += f":{url['port']}"
        if "://" not in host:
            host = "http://" + host
        parts = urlsplit(host)
        origin = f"{parts.scheme}://{parts.netloc}"
        segs = url.get("path") or []
        path = parts.path.rstrip("/") + "/" + "/".join(segs if isinstance(segs, list) else [segs])
        path = res(path, where)
        pvars = {v.get("key"): res(str(v.get("value", "")), where) for v in url.get("variable") or []
                 if v.get("key")}
        pairs = [(res(str(q.get("key") or ""), where), None if q.get("value") is None else res(str(q["value"]), where))
                 for q in url.get("query") or [] if not q.get("disabled")]
    segments = [pvars.get(s[1:], s) if s.startswith(":") else s for s in path.split("/")]
    path = _encode("/".join(segments), _PATH_SAFE) or "/"
    query = "&".join(_encode(k, _QUERY_KEY_SAFE) + ("" if v is None else "=" + _encode(v, _QUERY_SAFE))
                     for k, v in pairs)
    return origin, path + (f"?{query}" if query else "")


def _auth(auth: dict | None, res: _Vars, where: str, unmapped: list[str]) -> tuple[list[tuple[str, str]], str]:
    """(headers, query parameter) the request's auth adds."""
    kind = (auth or {}).get("type")
    if kind in (None, "noauth"):
        return [], ""
    raw = auth.get(kind) or []
    params = {p.get("key"): res(str(p.get("value", "")), where) for p in raw} if isinstance(raw, list) else {
        k: res(str(v), where) for k, v in raw.items()}
    if kind == "bearer":
        return [("Authorization", f"Bearer {params.get('token', '')}")], ""
    if kind == "basic":
        pair = f"{params.get('username', '')}:{params.get('password', '')}"
        return [("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())], ""
    if kind == "apikey":
        key, value = params.get("key", ""), params.get("value", "")
        if params.get("in") == "query":
            return [], _encode(key, _QUERY_KEY_SAFE) + "=" + _encode(value, _QUERY_SAFE)
        return [(key, value)], ""
    unmapped.append(f"{where}: auth type {kind} is not supported; sent without it")
    return [], ""


def _body(body: dict, hdrs: list[tuple[str, str]], res: _Vars, where: str, base_dir: str | None,
          unmapped: list[str]) -> tuple[str | None, str | None] | None:
    """(body, content type newman adds) or None when the request cannot be sent as newman does."""
    mode = body.get("mode")
    if body.get("disabled") or mode in (None, "none"):
        return None, None
    if mode == "raw":
        raw = body.get("raw") or ""
        if not raw:
            return None, None
        lang = ((body.get("options") or {}).get("raw") or {}).get("language") or "text"
        return res(raw, where), _RAW_TYPES.get(lang, "text/plain")
    if mode == "urlencoded":
        pairs = [(res(str(p.get("key", "")), where), res(str(p.get("value", "")), where))
                 for p in body.get("urlencoded") or [] if not p.get("disabled")]
        text = "&".join(f"{_encode(k, '-._~')}={_encode(v, '-._~')}" for k, v in pairs)
        return text, "application/x-www-form-urlencoded"
    if mode == "formdata":
        out = ""
        for p in body.get("formdata") or []:
            if p.get("disabled"):
                continue
            head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{res(str(p.get("key", "")), where)}"'
            if p.get("type") == "file":
                src = p.get("src")
                src = src[0] if isinstance(src, list) and src else src
                if not src:
                    unmapped.append(f"{where}: form-data file field {p.get('key')!r} has no file; not sent")
                    return None
                if base_dir is None:
                    unmapped.append(f"{where}: form-data file {src!r} is not read here (import with "
                                    "`surge import` beside the file); not sent")
                    return None
                try:
                    with open(os.path.join(base_dir, src), "rb") as f:
                        content = f.read().decode("utf-8")
                except OSError as exc:
                    unmapped.append(f"{where}: form-data file {src!r}: {exc.strerror}; not sent")
                    return None
                except UnicodeDecodeError:
                    unmapped.append(f"{where}: form-data file {src!r} is not UTF-8 text (a plan's body "
                                    "is text); not sent")
                    return None
                ctype = p.get("contentType") or mimetypes.guess_type(src)[0] or "application/octet-stream"
                head += f'; filename="{os.path.basename(src)}"\r\nContent-Type: {ctype}'
            else:
                content = res(str(p.get("value", "")), where)
                if p.get("contentType"):
                    head += f"\r\nContent-Type: {p['contentType']}"
            out += f"{head}\r\n\r\n{content}\r\n"
        return out + f"--{BOUNDARY}--\r\n", f"multipart/form-data; boundary={BOUNDARY}"
    unmapped.append(f"{where}: body mode {mode} is not supported; not sent")
    return None


def convert(text: str, name: str | None = None, environment: str | None = None,
            base_dir: str | None = ".") -> Imported:
    try:
        coll = json.loads(text)
        info, items = coll["info"], coll["item"]
    except (ValueError, KeyError, TypeError):
        raise ImportError_("not a Postman collection (expected {\"info\": ..., \"item\": [...]})") from None
    unmapped: list[str] = []
    values = {v["key"]: str(v.get("value", "")) for v in coll.get("variable", []) or []
              if v.get("key") and not v.get("disabled")}
    if environment:
        try:  # an environment's values win over the collection's, as in Postman and newman
            env = json.loads(environment)
            values |= {v["key"]: str(v.get("value", "")) for v in env.get("values", []) or []
                       if v.get("key") and v.get("enabled", True)}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ImportError_("not a Postman environment (expected {\"values\": [...]})") from None
    if _script_lines(coll, "prerequest") or _script_lines(coll, "test"):
        unmapped.append("collection: its scripts are not run")
    requests = _items(items, "", coll.get("auth"), unmapped)
    runtime = {m.group(2) for _, it, _ in requests for line in _script_lines(it, "test")
               if (m := _SET.search(line))}
    res = _Vars(values, runtime, unmapped)
    built = []
    for label, item, inherited in requests:
        req = item["request"] if isinstance(item["request"], dict) else {"url": item["request"]}
        where = f"request {label!r}"
        try:
            origin, path = _url(req.get("url", ""), res, where)
        except ValueError as exc:
            unmapped.append(f"{where}: its URL cannot be read ({exc}); not sent")
            continue
        built.append((label, item, req, inherited, where, origin, path))
    target = main_origin([b[5] for b in built])
    if target is None:
        raise ImportError_("no request with an http(s) URL in the collection")
    steps, taken = [], set()
    for label, item, req, inherited, where, origin, path in built:
        method = str(req.get("method", "GET")).upper()
        if origin != target:
            unmapped.append(f"{where}: {origin} is another origin than {target}; not sent")
            continue
        if method not in METHODS:
            unmapped.append(f"{where}: method {method} is not supported; not sent")
            continue
        hdrs = [(h.get("key", ""), res(str(h.get("value", "")), where))
                for h in req.get("header", []) or [] if not h.get("disabled")]
        auth_headers, auth_query = _auth(req.get("auth") if "auth" in req else inherited, res, where, unmapped)
        hdrs += auth_headers
        if auth_query:
            path += ("&" if "?" in path else "?") + auth_query
        body = _body(req.get("body") or {}, hdrs, res, where, base_dir, unmapped)
        if body is None:
            continue
        step: dict[str, Any] = {"name": step_name(method, "", taken, hint=label), "method": method,
                                "path": path}
        text, ctype = body
        if text is not None:
            step["body"] = text
            if ctype and not any(k.lower() == "content-type" for k, _ in hdrs):
                hdrs.append(("Content-Type", ctype))
            elif ctype and ctype.startswith("multipart/"):
                hdrs = [(k, v) for k, v in hdrs if k.lower() != "content-type"] + [("Content-Type", ctype)]
        headers = clean_headers(hdrs, where, unmapped, host=target.split("://", 1)[1])
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
    initial = {k: values[k] for k in sorted(runtime) if k in values and re.fullmatch(r"[A-Za-z_]\w*", k)}
    if initial:  # a script sets it later; until then it has its collection value
        plan["vars"] = initial
    plan["flows"] = [{"name": "collection", "steps": steps}]
    return Imported(plan, unmapped)
