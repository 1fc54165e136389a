"""curl command lines (one, or several as dev tools' "copy all as cURL" gives) → a plan.

Understood: -X, -H, -d/--data*/--json, -G, -u (basic auth), -A, -e, -b (listed: the
cookie jar does cookies), -k (insecure), -x (proxy); options that only change
curl's own output (-s, -v, -L, --compressed, ...) are ignored. Anything else is listed.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from typing import Any
from urllib.parse import urlsplit

from services.cli.importers.common import (
    METHODS, ImportError_, Imported, clean_headers, main_origin, origin_of, path_of, step_name,
)

_QUIET = {"-s", "--silent", "-S", "--show-error", "-v", "--verbose", "-L", "--location",
          "--compressed", "-i", "--include", "-f", "--fail", "--http1.1", "--http2", "-g",
          "--globoff", "-N", "--no-buffer"}
_WITH_VALUE_IGNORED = {"-o", "--output", "-w", "--write-out", "-m", "--max-time",
                       "--connect-timeout", "--retry"}
# options that take a value Surge has no use for: listed, and their value skipped
_WITH_VALUE = {"--limit-rate", "--max-redirs", "--resolve", "-c", "--cookie-jar", "-D",
               "--dump-header", "--cacert", "--cert", "--key", "-E", "-T", "--upload-file",
               "-F", "--form", "--form-string", "-r", "--range", "-U", "--proxy-user",
               "--proto", "--interface", "--local-port", "-K", "--config", "-z"}
_DATA = {"-d", "--data", "--data-raw", "--data-binary", "--data-ascii", "--data-urlencode"}


def split_commands(text: str) -> list[str]:
    joined = re.sub(r"\\\r?\n", " ", text.strip())  # line continuations
    joined = re.sub(r"\^\r?\n", " ", joined)  # Windows cmd continuations
    parts = re.split(r"(?:^|\n|;|&&)\s*(?=curl\s)", joined)
    return [p.strip() for p in parts if p.strip()]


def parse(command: str, unmapped: list[str], where: str) -> dict[str, Any]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ImportError_(f"{where}: cannot split the command line: {exc}") from None
    if not argv or argv[0] != "curl":
        raise ImportError_(f"{where}: not a curl command")
    out: dict[str, Any] = {"headers": [], "data": [], "method": None, "url": None, "get": False}
    i = 1
    while i < len(argv):
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if a in ("-X", "--request"):
            out["method"], i = (nxt or "GET").upper(), i + 2
        elif a in ("-H", "--header"):
            if nxt and ":" in nxt:
                k, v = nxt.split(":", 1)
                out["headers"].append((k.strip(), v.strip()))
            i += 2
        elif a in _DATA:
            out["data"].append(nxt or "")
            i += 2
        elif a == "--json":
            out["data"].append(nxt or "")
            out["headers"] += [("Content-Type", "application/json"), ("Accept", "application/json")]
            i += 2
        elif a in ("-G", "--get"):
            out["get"], i = True, i + 1
        elif a in ("-u", "--user"):
            token = base64.b64encode((nxt or "").encode()).decode()
            out["headers"].append(("Authorization", f"Basic {token}"))
            i += 2
        elif a in ("-A", "--user-agent"):
            out["headers"].append(("User-Agent", nxt or ""))
            i += 2
        elif a in ("-e", "--referer"):
            out["headers"].append(("Referer", nxt or ""))
            i += 2
        elif a in ("-b", "--cookie"):
            unmapped.append(f"{where}: cookie {nxt!r} left out (the cookie jar carries cookies; "
                            "add a Cookie header by hand if the target needs it up front)")
            i += 2
        elif a in ("-k", "--insecure"):
            out["insecure"], i = True, i + 1
        elif a in ("-x", "--proxy"):
            out["proxy"], i = nxt, i + 2
        elif a == "--url":
            out["url"], i = nxt, i + 2
        elif a in _QUIET:
            i += 1
        elif a in _WITH_VALUE_IGNORED:
            i += 2
        elif a in _WITH_VALUE:
            unmapped.append(f"{where}: option {a} {nxt!r} is not supported; ignored")
            i += 2
        elif a.startswith("-"):
            unmapped.append(f"{where}: option {a} is not supported; ignored")
            i += 1
        else:
            out["url"], i = a, i + 1
    if not out["url"]:
        raise ImportError_(f"{where}: no URL")
    if "://" not in out["url"]:
        out["url"] = "http://" + out["url"]
    return out


def convert(text: str, name: str = "curl-import") -> Imported:
    commands = split_commands(text)
    if not commands:
        raise ImportError_("no curl command given")
    unmapped: list[str] = []
    parsed = [parse(c, unmapped, f"command {n + 1}") for n, c in enumerate(commands)]
    target = main_origin([p["url"] for p in parsed])
    if target is None:
        raise ImportError_("no http(s) URL in the curl command")
    steps, taken = [], set()
    plan: dict[str, Any] = {"name": name, "target": target, "timeout": "10s"}
    for n, p in enumerate(parsed):
        where = f"command {n + 1}"
        url = p["url"]
        if origin_of(url) != target:
            unmapped.append(f"{where}: {url} is another origin than {target}; not sent")
            continue
        data = "&".join(p["data"]) if p["data"] else None
        method = p["method"] or ("POST" if data is not None and not p["get"] else "GET")
        if method not in METHODS:
            unmapped.append(f"{where}: method {method} is not supported; skipped")
            continue
        path = path_of(url)
        if data is not None and p["get"]:
            path += ("&" if "?" in path else "?") + data
            data = None
        step: dict[str, Any] = {"name": step_name(method, path, taken), "method": method, "path": path}
        headers = clean_headers(p["headers"], where, unmapped)
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        if data is not None:
            if ctype and "json" in ctype:
                try:
                    step["json"] = json.loads(data)
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                except ValueError:
                    step["body"] = data
            else:
                step["body"] = data
                if ctype is None:  # what curl -d sends
                    headers["Content-Type"] = "application/x-www-form-urlencoded"
        if headers:
            step["headers"] = headers
        if p.get("insecure"):
            plan["insecure"] = True
        if p.get("proxy"):
            proxy = p["proxy"] if "://" in p["proxy"] else f"http://{p['proxy']}"
            if urlsplit(proxy).scheme in ("http", "https"):
                plan["proxy"] = proxy
            else:
                unmapped.append(f"{where}: proxy {proxy} is not an http proxy; left out")
        steps.append(step)
    if not steps:
        raise ImportError_("no curl command could be mapped")
    plan["flows"] = [{"name": "curl", "steps": steps}]
    return Imported(plan, unmapped)
