"""HAR (HTTP Archive, as browsers' dev tools save it) → a one-flow plan.

Each entry becomes a step, in recorded order, with its method, path, headers and
body; the recorded status becomes the step's status check; the pause between the
end of one response and the next request becomes the previous step's think time
(pauses under 100 ms are the browser's own work and are left out). Requests to
other origins than the most used one (CDNs, analytics) are listed, not sent.

Correlation: a string that a recorded JSON response returned (a token, an id) and a
later request sends back (in its path, a header or its body) becomes a variable:
the response's step extracts it by JSONPath and the later requests use ``{{var}}``,
so the replayed session logs in for real instead of replaying a stale token.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus, urljoin

from services.plan.importers.common import (
    METHODS, ImportError_, Imported, clean_headers, main_origin, origin_of, path_of, step_name,
)

MIN_THINK_S = 0.1
BOUNDARY = "----SurgeImportBoundary0000"  # a form recorded without its text gets a fixed one
_REDIRECTS = {301, 302, 303, 307, 308}
MIN_CORRELATE_LEN = 6  # shorter strings ("ann", "ok") are too likely to match by chance


def _strings(doc: Any, path: str = "$") -> list[tuple[str, str]]:
    """(JSONPath, value) of every string in a JSON document."""
    out: list[tuple[str, str]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            key = f"{path}.{k}" if re.fullmatch(r"[A-Za-z_]\w*", str(k)) else f"{path}['{k}']"
            out += _strings(v, key)
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:50]):
            out += _strings(v, f"{path}[{i}]")
    elif isinstance(doc, str) and len(doc) >= MIN_CORRELATE_LEN:
        out.append((path, doc))
    return out


def _var_name(jsonpath: str, taken: set[str]) -> str:
    base = re.sub(r"\W+", "_", re.split(r"[.\[]", jsonpath)[-1]).strip("_") or "value"
    if not re.match(r"[A-Za-z_]", base):
        base = "v_" + base
    name, n = base, 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    taken.add(name)
    return name


class _Correlator:
    def __init__(self) -> None:
        self.candidates: dict[str, tuple[dict, str]] = {}  # value -> (its step, jsonpath)
        self.vars: dict[str, str] = {}  # value -> variable name
        self.names: set[str] = set()
        self.notes: list[str] = []

    def learn(self, step: dict, response: dict) -> None:
        content = (response or {}).get("content") or {}
        if "json" not in str(content.get("mimeType", "")) or not content.get("text"):
            return
        try:
            doc = json.loads(content["text"])
        except ValueError:
            return
        for path, value in _strings(doc):
            self.candidates.setdefault(value, (step, path))

    def apply(self, text: str) -> str:
        for value in sorted(self.candidates, key=len, reverse=True):
            if value in text and "{{" not in value:
                text = text.replace(value, "{{" + self._var(value) + "}}")
        return text

    def _var(self, value: str) -> str:
        if value not in self.vars:
            step, path = self.candidates[value]
            name = _var_name(path, self.names)
            self.vars[value] = name
            step.setdefault("extract", {})[name] = {"jsonpath": path}
            self.notes.append(f"correlated: {value[:40]!r} from {step['name']} ({path}) → {{{{{name}}}}}")
        return self.vars[value]


def _redirect_to(entry: dict, url: str) -> str | None:
    resp = entry.get("response") or {}
    if resp.get("status") not in _REDIRECTS:
        return None
    loc = resp.get("redirectURL") or next(
        (h.get("value") for h in resp.get("headers", []) if str(h.get("name", "")).lower() == "location"), None)
    return urljoin(url, loc) if loc else None


def _follows(entry: dict, location: str) -> bool:
    req = entry.get("request") or {}
    return req.get("url", "").split("#")[0] == location.split("#")[0] and \
        str(req.get("method", "GET")).upper() in ("GET", "HEAD", "POST")


def _form(params: list[dict]) -> str:
    """A urlencoded body from ``params`` (decoded, as Playwright and Firefox record them),
    encoded as a browser's form serializer does: space as ``+``, ``*-._`` kept."""
    enc = lambda v: quote_plus(str(v), safe="*").replace("~", "%7E")  # noqa: E731
    return "&".join(f"{enc(p.get('name', ''))}={enc(p.get('value', ''))}" for p in params)


def _multipart(params: list[dict], where: str, unmapped: list[str]) -> str:
    out = ""
    for p in params:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{p.get("name", "")}"'
        if p.get("fileName") is not None:
            head += f'; filename="{p["fileName"]}"\r\nContent-Type: ' + (
                p.get("contentType") or "application/octet-stream")
            if not p.get("value"):
                unmapped.append(f"{where}: file {p['fileName']!r} of field {p.get('name')!r}: its "
                                "content is not in the HAR; sent empty")
        out += f"{head}\r\n\r\n{p.get('value', '')}\r\n"
    return out + f"--{BOUNDARY}--\r\n"


def _body(post: dict, headers: dict[str, str], where: str,
          unmapped: list[str]) -> tuple[str | None | bool, str | None]:
    """(body text, content type to set) of a recorded request; (False, None): not sendable."""
    mime = str(post.get("mimeType") or "")
    text = post.get("text")
    if text is not None:
        if post.get("encoding") == "base64":
            try:
                text = base64.b64decode(text).decode("utf-8")
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                unmapped.append(f"{where}: the body is binary (not UTF-8 text; a plan's body is text); "
                                "not sent")
                return False, None
        has_type = any(k.lower() == "content-type" for k in headers)
        return text, None if has_type or not mime else mime
    params = post.get("params")
    if not params:
        return None, None
    if "multipart/form-data" in mime:
        return _multipart(params, where, unmapped), f"multipart/form-data; boundary={BOUNDARY}"
    if mime and "x-www-form-urlencoded" not in mime:
        unmapped.append(f"{where}: params of a {mime} body are read as a urlencoded form")
    return _form(params), "application/x-www-form-urlencoded"


def _set_cookies(entry: dict) -> set[str]:
    resp = entry.get("response") or {}
    names = {str(c.get("name")) for c in resp.get("cookies") or [] if c.get("name")}
    names |= {str(h.get("value", "")).split("=", 1)[0].strip() for h in resp.get("headers") or []
              if str(h.get("name", "")).lower() == "set-cookie"}
    return names


def _own_cookies(values: list[str], jar: set[str]) -> str:
    pairs = [p.strip() for v in values for p in v.split(";") if p.strip()]
    return "; ".join(p for p in pairs if p.split("=", 1)[0].strip() not in jar)


def _time(entry: dict) -> float | None:
    try:
        return datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00")).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def convert(text: str, name: str = "har-import", origin: str | None = None) -> Imported:
    try:
        har = json.loads(text)
        entries = har["log"]["entries"]
    except (ValueError, KeyError, TypeError):
        raise ImportError_("not a HAR file (expected {\"log\": {\"entries\": [...]}})") from None
    unmapped: list[str] = []
    urls = [e.get("request", {}).get("url", "") for e in entries]
    target = origin.rstrip("/") if origin else main_origin(urls)
    if target is None:
        raise ImportError_("the HAR has no http(s) request")
    if target not in {origin_of(u) for u in urls}:
        raise ImportError_(f"no request in the HAR goes to {target} "
                           f"(origins: {', '.join(sorted({origin_of(u) for u in urls}))})")
    steps: list[dict[str, Any]] = []
    taken: set[str] = set()
    prev_end: float | None = None
    corr = _Correlator()
    skip: set[int] = set()
    jar: set[str] = set()  # cookies the target set so far: the replay's cookie jar has them too
    for i, entry in enumerate(entries):
        if i in skip:
            continue
        req = entry.get("request", {})
        url, method = req.get("url", ""), str(req.get("method", "GET")).upper()
        where = f"entry {i} ({method} {url[:80]})"
        if origin_of(url) != target:
            unmapped.append(f"{where}: another origin than {target}; not sent")
            continue
        if method not in METHODS:
            unmapped.append(f"{where}: method {method} is not supported; skipped")
            continue
        start = _time(entry)
        if steps and prev_end is not None and start is not None and start - prev_end >= MIN_THINK_S:
            steps[-1]["think"] = f"{round(start - prev_end, 3):g}s"
        if start is not None:
            prev_end = start + max(float(entry.get("time", 0) or 0), 0) / 1000
        path = path_of(url)
        step: dict[str, Any] = {"name": step_name(method, path, taken), "method": method,
                                "path": corr.apply(path)}
        raw = [(h.get("name", ""), h.get("value", "")) for h in req.get("headers", [])]
        own = _own_cookies([v for k, v in raw if k.lower() == "cookie"], jar)
        headers = clean_headers([(k, v) for k, v in raw if k.lower() != "cookie"], where, unmapped,
                                host=target.split("://", 1)[1])
        if own:  # cookies no recorded response set (a script's, or an older session's)
            headers["Cookie"] = own
            unmapped.append(f"{where}: cookie {own[:60]!r} sent as recorded (no recorded response "
                            "set it; a cookie the target sets during the run replaces it)")
        headers = {k: corr.apply(v) for k, v in headers.items()}
        post = req.get("postData") or {}
        if not post.get("text") and not post.get("params") and (
                (req.get("bodySize") or 0) > 0 or any(k.lower() == "content-type" for k in headers)):
            # browsers leave some bodies out of a HAR (file uploads): an empty one is not the same request
            unmapped.append(f"{where}: the HAR does not hold this request's body (browsers leave file "
                            "uploads out); not sent")
            continue
        body, ctype = _body(post, headers, where, unmapped)
        if body is False:
            continue
        if body is not None:
            step["body"] = corr.apply(body)
            if ctype is not None:
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                headers["Content-Type"] = ctype
        if headers:
            step["headers"] = headers
        status = (entry.get("response") or {}).get("status")
        location = _redirect_to(entry, url)
        if location and i + 1 < len(entries) and _follows(entries[i + 1], location):
            # the browser's next entry is this redirect followed; the step follows it too
            # (follow_redirects: Chromium's limit of 20; Surge follows only when told), so
            # it is not a step of its own, and this step ends on that entry's status
            skip.add(i + 1)
            step["follow_redirects"] = 20
            status = (entries[i + 1].get("response") or {}).get("status")
        if isinstance(status, int) and 100 <= status <= 599:
            step["check"] = {"status": status}
        steps.append(step)
        corr.learn(step, entry.get("response") or {})
        jar |= _set_cookies(entry)
        if i + 1 in skip:
            jar |= _set_cookies(entries[i + 1])
    if not steps:
        raise ImportError_(f"no request to {target} could be mapped")
    plan = {"name": name, "description": f"recorded user session ({len(steps)} requests)",
            "target": target, "timeout": "10s", "flows": [{"name": "session", "steps": steps}]}
    return Imported(plan, unmapped + corr.notes)
