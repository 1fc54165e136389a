"""OpenAPI 3.x (YAML or JSON) → a plan: one request per operation.

* ``servers[0]`` is the target (its variables at their defaults; a path in it prefixes
  every request); relative or missing servers are listed (give ``--target``);
* each operation becomes a step named by its ``operationId`` (else ``METHOD /path``) in
  the flow of its first tag (untagged ones in ``default``), in the spec's order;
* parameters (path, query, header, cookie) take their ``example``, ``examples``, the
  schema's ``example``/``default``/``enum``, else a value generated from the schema;
  path parameters always, the others when required or given an example;
* the request body prefers ``application/json`` (→ ``json``), then urlencoded, multipart
  and text media types; its example, else one generated from its schema (``$ref``,
  ``allOf``, ``oneOf``/``anyOf`` (the first), formats, bounds; recursion cut at 6 levels);
* the lowest 2xx response listed becomes ``check.status``;
* security: API keys (header, query, cookie), HTTP bearer/basic and OAuth2/OpenID
  Connect tokens become ``{{variables}}`` declared empty in ``vars`` and listed.

``$ref``s inside the document are resolved with ``jsonref``; references to other files
or URLs are never fetched: they are listed and read as empty schemas.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote, urlsplit

import jsonref
import yaml

from services.plan.importers.common import ImportError_, Imported, step_name

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
MAX_DEPTH = 6
_PARAM = re.compile(r"[{]([^}]*)[}]")
_FORMATS = {"date-time": "2024-01-01T00:00:00Z", "date": "2024-01-01", "time": "12:00:00",
            "email": "user@example.com", "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "uri": "https://example.com", "url": "https://example.com", "hostname": "example.com",
            "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "byte": base64.b64encode(b"surge").decode(),
            "password": "secret"}


def _local_refs_only(doc: Any, unmapped: list[str]) -> Any:
    """Every ``$ref`` that is not inside this document becomes an empty schema, listed."""
    if isinstance(doc, dict):
        ref = doc.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            unmapped.append(f"$ref {ref!r} points outside the document; not fetched (read as any value)")
            return {}
        return {k: _local_refs_only(v, unmapped) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_local_refs_only(v, unmapped) for v in doc]
    return doc


def example(schema: Any, depth: int = 0) -> Any:
    """A value that fits ``schema``: its example, else one built from its type."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    for key in ("example", "default", "const"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = example(part, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
            elif value is not None and not merged:
                return value
        return merged
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            return example(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else None
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: example(v, depth + 1) for k, v in props.items()}
    if kind == "array":
        item = example(schema.get("items") or {}, depth + 1)
        return [] if item is None else [item] * max(int(schema.get("minItems") or 1), 1)
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = low + 1 if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool) else low
        if isinstance(schema.get("maximum"), (int, float)) and value > schema["maximum"]:
            value = schema["maximum"]
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "string":
        text = _FORMATS.get(str(schema.get("format")), "string")
        if schema.get("minLength") and len(text) < schema["minLength"]:
            text = text + "x" * (schema["minLength"] - len(text))
        if schema.get("maxLength") is not None:
            text = text[: schema["maxLength"]]
        return text
    return None


def _param_value(p: dict) -> Any:
    if "example" in p:
        return p["example"]
    if isinstance(p.get("examples"), dict) and p["examples"]:
        first = next(iter(p["examples"].values()))
        if isinstance(first, dict) and "value" in first:
            return first["value"]
    return example(p.get("schema") or {})


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)  # style=simple/form, explode=false
    if isinstance(value, dict):
        return ",".join(f"{k},{_text(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def _media_example(media: dict) -> Any:
    if "example" in media:
        return media["example"]
    if isinstance(media.get("examples"), dict) and media["examples"]:
        first = next(iter(media["examples"].values()))
        if isinstance(first, dict) and "value" in first:
            return first["value"]
    return example(media.get("schema") or {})


def _origin(doc: dict, unmapped: list[str]) -> tuple[str, str]:
    """(target origin, base path) from ``servers[0]``."""
    servers = doc.get("servers") or []
    if not servers or not isinstance(servers[0], dict):
        unmapped.append("no servers: the target is http://127.0.0.1:8080 (give --target)")
        return "http://127.0.0.1:8080", ""
    url = str(servers[0].get("url") or "")
    for name, var in (servers[0].get("variables") or {}).items():
        url = url.replace("{" + name + "}", str((var or {}).get("default", "")))
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        unmapped.append(f"servers[0] {url!r} is not an absolute http(s) URL: the target is "
                        "http://127.0.0.1:8080 with its path kept (give --target)")
        return "http://127.0.0.1:8080", parts.path.rstrip("/")
    if len(servers) > 1:
        unmapped.append(f"servers[1:] ({', '.join(str(s.get('url')) for s in servers[1:])}) not used; "
                        f"the target is servers[0]")
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


def _security(doc: dict, op: dict, headers: dict[str, str], query: list[str], cookies: list[str],
              plan_vars: set[str]) -> None:
    schemes = ((doc.get("components") or {}).get("securitySchemes")) or {}
    requirements = op.get("security", doc.get("security")) or []
    if not requirements:
        return
    for name in requirements[0]:  # the first alternative
        s = schemes.get(name) or {}
        var = re.sub(r"\W+", "_", name).strip("_") or "credential"
        if s.get("type") == "apiKey":
            where, key = s.get("in"), s.get("name", name)
            ref = "{{" + var + "}}"
            if where == "header":
                headers[key] = ref
            elif where == "query":
                query.append(f"{quote(key, safe='')}={ref}")
            elif where == "cookie":
                cookies.append(f"{key}={ref}")
        elif s.get("type") == "http" and str(s.get("scheme", "")).lower() == "basic":
            headers["Authorization"] = "Basic {{" + var + "}}"
        elif s.get("type") in ("http", "oauth2", "openIdConnect"):
            headers["Authorization"] = "Bearer {{" + var + "}}"
        else:
            continue
        plan_vars.add(var)


def _body(op: dict, step: dict, headers: dict[str, str], where: str, unmapped: list[str]) -> None:
    body = op.get("requestBody") or {}
    content = body.get("content") or {}
    if not content:
        return
    order = ["application/json"] + [m for m in content if m.endswith("+json")] + [
        "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"] + list(content)
    mtype = next(m for m in order if m in content)
    value = _media_example(content[mtype] or {})
    if mtype == "application/json":
        step["json"] = value
    elif mtype.endswith("+json") or mtype.endswith("/json"):
        step["body"] = json.dumps(value, ensure_ascii=False)
        headers["Content-Type"] = mtype
    elif mtype == "application/x-www-form-urlencoded" and isinstance(value, dict):
        step["body"] = "&".join(f"{quote(str(k), safe='')}={quote(_text(v), safe='')}" for k, v in value.items())
        headers["Content-Type"] = mtype
    elif mtype == "multipart/form-data" and isinstance(value, dict):
        b = "----SurgeOpenAPIBoundary"
        parts = "".join(f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                        f'{json.dumps(v) if isinstance(v, (dict, list)) else _text(v)}\r\n'
                        for k, v in value.items())
        step["body"] = parts + f"--{b}--\r\n"
        headers["Content-Type"] = f"multipart/form-data; boundary={b}"
    elif mtype.startswith("text/") or isinstance(value, str):
        step["body"] = value if isinstance(value, str) else json.dumps(value)
        headers["Content-Type"] = mtype
    else:
        unmapped.append(f"{where}: request body {mtype} cannot be generated; not sent")
        return
    if len(content) > 1:
        unmapped.append(f"{where}: request body sent as {mtype} (of {', '.join(content)})")


def convert(text: str, name: str | None = None) -> Imported:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ImportError_(f"not YAML or JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("paths"), dict):
        raise ImportError_("not an OpenAPI document (expected openapi: 3.x and paths)")
    version = str(raw.get("openapi") or raw.get("swagger") or "")
    if not version.startswith("3."):
        raise ImportError_(f"OpenAPI {version or '?'} is not supported: give an OpenAPI 3.x document "
                           "(Swagger 2.0 converts with swagger2openapi)")
    unmapped: list[str] = []
    try:
        doc = jsonref.replace_refs(_local_refs_only(raw, unmapped), proxies=False, lazy_load=False)
    except jsonref.JsonRefError as exc:
        raise ImportError_(f"a $ref cannot be resolved: {exc.message}") from None
    target, base = _origin(doc, unmapped)
    flows: dict[str, list[dict[str, Any]]] = {}
    taken: set[str] = set()
    plan_vars: set[str] = set()
    for path, item in doc["paths"].items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method in [m for m in item if m not in _METHODS and m not in ("parameters", "summary", "description", "servers", "$ref")]:
            unmapped.append(f"{path}: {method} operations are not mapped")
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            where = f"{method.upper()} {path}"
            params = {(p.get("in"), p.get("name")): p for p in shared + (op.get("parameters") or [])
                      if isinstance(p, dict)}
            headers: dict[str, str] = {}
            query: list[str] = []
            cookies: list[str] = []
            url = path
            for (loc, pname), p in params.items():
                if loc != "path" and not p.get("required") and "example" not in p and "examples" not in p:
                    continue
                value = _text(_param_value(p))
                if loc == "path":
                    url = url.replace("{" + str(pname) + "}", quote(value, safe=""))
                elif loc == "query":
                    query.append(f"{quote(str(pname), safe='')}={quote(value, safe='')}")
                elif loc == "header":
                    headers[str(pname)] = value
                elif loc == "cookie":
                    cookies.append(f"{pname}={value}")
            _security(doc, op, headers, query, cookies, plan_vars)
            full = base + url + (("?" + "&".join(query)) if query else "")
            hint = op.get("operationId") or method.upper() + " " + _PARAM.sub(r":\1", path)
            step: dict[str, Any] = {"name": step_name(method.upper(), path, taken, hint=hint),
                                    "method": method.upper(), "path": full}
            _body(op, step, headers, where, unmapped)
            if cookies:
                headers["Cookie"] = "; ".join(cookies)
            if headers:
                step["headers"] = headers
            ok = sorted(int(c) for c in (op.get("responses") or {}) if str(c).isdigit() and str(c).startswith("2"))
            if ok:
                step["check"] = {"status": ok[0]}
            if op.get("callbacks"):
                unmapped.append(f"{where}: callbacks are not mapped")
            tags = op.get("tags") or ["default"]
            flows.setdefault(str(tags[0]), []).append(step)
    if raw.get("webhooks"):
        unmapped.append("webhooks are not mapped (they are requests the API sends)")
    if not flows:
        raise ImportError_("the document has no operations")
    info = raw.get("info") or {}
    plan: dict[str, Any] = {
        "name": re.sub(r"[^A-Za-z0-9_.:\-/ ]+", "_", name or str(info.get("title") or "openapi"))[:100],
        "description": f"{info.get('title', '')} {info.get('version', '')}: one request per operation".strip(),
        "target": target, "timeout": "10s",
    }
    if plan_vars:
        plan["vars"] = {v: "" for v in sorted(plan_vars)}
        unmapped += [f"credential {{{{{v}}}}} (security scheme) is empty in vars: set it" for v in sorted(plan_vars)]
    plan["flows"] = [{"name": step_name("", "", set(), hint=tag), "steps": steps} for tag, steps in flows.items()]
    return Imported(plan, unmapped)
