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

import json
import re
from datetime import datetime
from typing import Any

from services.plan.importers.common import (
    METHODS, ImportError_, Imported, clean_headers, main_origin, origin_of, path_of, step_name,
)

MIN_THINK_S = 0.1
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
    for i, entry in enumerate(entries):
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
        headers = clean_headers([(h.get("name", ""), h.get("value", "")) for h in req.get("headers", [])],
                                where, unmapped)
        headers = {k: corr.apply(v) for k, v in headers.items()}
        post = req.get("postData") or {}
        if post.get("text") is not None:
            post = {**post, "text": corr.apply(post["text"])}
            mime = post.get("mimeType", "")
            if "json" in mime:
                try:
                    step["json"] = json.loads(post["text"])
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                except ValueError:
                    step["body"] = post["text"]
            else:
                step["body"] = post["text"]
        elif post.get("params"):
            unmapped.append(f"{where}: multipart/form params are not supported; body left out")
        if headers:
            step["headers"] = headers
        status = (entry.get("response") or {}).get("status")
        if isinstance(status, int) and 100 <= status <= 599:
            step["check"] = {"status": status}
        steps.append(step)
        corr.learn(step, entry.get("response") or {})
    if not steps:
        raise ImportError_(f"no request to {target} could be mapped")
    plan = {"name": name, "description": f"recorded user session ({len(steps)} requests)",
            "target": target, "timeout": "10s", "flows": [{"name": "session", "steps": steps}]}
    return Imported(plan, unmapped + corr.notes)
