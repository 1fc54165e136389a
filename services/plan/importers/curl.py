"""curl command lines (one, or several as dev tools' "Copy all as cURL" gives) → a plan.

Each command becomes a step that sends what curl itself sends (tested against the real
curl in tests/integration/test_import_oracles.py): the same method, target, body bytes
and content type. Understood, as curl 7.88 reads them:

* bodies: ``-d``/``--data``/``--data-ascii`` (``@file`` read with CR/LF removed),
  ``--data-binary`` (``@file`` as is), ``--data-raw`` (no ``@``), ``--data-urlencode``
  (``content``, ``=content``, ``name=content``, ``@file``, ``name@file``; encoded as curl
  does: unreserved characters kept, space as ``+``), pieces joined by ``&``; ``--json``
  (pieces joined as they are, JSON content type and accept); ``-F``/``--form``/
  ``--form-string`` (multipart: ``name=value``, ``name=@file``, ``name=<file``,
  ``;type=``, ``;filename=``; a fixed boundary);
* ``-G`` (the data goes to the query), ``--url-query``, ``-X``, ``-I``, ``-H``
  (repeated names joined with ``, ``, listed), ``-u user:pass`` (basic), ``-A``, ``-e``,
  ``-b 'name=value'`` (a Cookie header), ``-k``, ``-x``, ``--url``;
* ``-L``, ``--compressed``, ``-s``, ``-v``, ``-o``, … change only curl's own output or
  what the engine does anyway (it asks for gzip); ``-L`` becomes the step's
  ``follow_redirects: 50`` (curl's own limit; Surge follows redirects only when told).

Everything else is listed, and so is a body that is not UTF-8 text (a plan's body is text).
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any
from urllib.parse import quote_plus, urlsplit

from services.plan.importers import shell
from services.plan.importers.common import (
    METHODS, ImportError_, Imported, clean_headers, main_origin, origin_of, path_of, step_name,
)

BOUNDARY = "------------------------surgeimport0000"  # curl's shape, fixed so plans are stable
_FOLLOW = {"-L", "--location", "--location-trusted"}  # → the step's follow_redirects
CURL_MAX_REDIRS = 50  # curl's default --max-redirs
_QUIET = {"-s", "--silent", "-S", "--show-error", "-v", "--verbose", "-L", "--location",
          "--compressed", "-i", "--include", "-f", "--fail", "--http1.1", "-g", "--globoff",
          "-N", "--no-buffer", "--location-trusted", "--fail-with-body", "-#", "--progress-bar",
          "--no-progress-meter"}
_WITH_VALUE_IGNORED = {"-o", "--output", "-w", "--write-out", "-m", "--max-time",
                       "--connect-timeout", "--retry", "--max-redirs", "--stderr", "--trace",
                       "--trace-ascii"}
_WITH_VALUE = {"--limit-rate", "--resolve", "-c", "--cookie-jar", "-D", "--dump-header",
               "--cacert", "--cert", "--key", "-E", "-T", "--upload-file", "-r", "--range",
               "-U", "--proxy-user", "--proto", "--interface", "--local-port", "-K", "--config",
               "-z", "--time-cond", "--connect-to", "--oauth2-bearer", "--aws-sigv4"}
_DATA = {"-d": "ascii", "--data": "ascii", "--data-ascii": "ascii", "--data-binary": "binary",
         "--data-raw": "raw", "--data-urlencode": "urlencode"}
# short options that take a value: "-XPOST", "-HX: 1" are the same as "-X POST", "-H 'X: 1'"
_SHORT_VALUE = set("XHdufbAexoFwmrUEKTcDz")
# curl's guess of a file part's type by its extension (lib/mime.c), else octet-stream
_MIME = {"gif": "image/gif", "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
         "svg": "image/svg+xml", "txt": "text/plain", "htm": "text/html", "html": "text/html",
         "pdf": "application/pdf", "xml": "application/xml"}


def urlencode(text: bytes) -> str:
    """curl_easy_escape with spaces as ``+`` (what ``--data-urlencode`` sends)."""
    return quote_plus(text, safe="")


class _Command:
    """One curl invocation: what it would send."""

    def __init__(self, where: str, base_dir: str | None, unmapped: list[str]) -> None:
        self.where, self.base_dir, self.unmapped = where, base_dir, unmapped
        self.headers: list[tuple[str, str]] = []
        self.removed: list[str] = []
        self.data: list[bytes] = []
        self.json = False
        self.form: list[tuple[str, bytes, str | None, str | None]] = []  # name, value, filename, type
        self.query: list[str] = []
        self.method: str | None = None
        self.url: str | None = None
        self.get = self.head = self.insecure = self.follow = self.h2c = False
        self.proxy: str | None = None
        self.cookies: list[str] = []
        self.broken = False

    def note(self, text: str) -> None:
        self.unmapped.append(f"{self.where}: {text}")

    def read(self, name: str, strip_newlines: bool = False) -> bytes:
        if name == "-":
            self.note("data from standard input cannot be read here; left empty")
            self.broken = True
            return b""
        if self.base_dir is None:  # an upload: no files come with it, none of ours are read
            self.note(f"file {name!r} is not read here (import with `surge import` beside the file); "
                      "the request is not sent")
            self.broken = True
            return b""
        path = os.path.join(self.base_dir, os.path.expanduser(name))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            self.note(f"cannot read {name}: {exc.strerror}; the request is not sent")
            self.broken = True
            return b""
        return data.replace(b"\r", b"").replace(b"\n", b"") if strip_newlines else data

    def add_data(self, kind: str, arg: str) -> None:
        if kind == "urlencode":
            self.data.append(self.urlencoded(arg).encode())
        elif kind == "raw" or not arg.startswith("@"):
            self.data.append(arg.encode())
        else:
            self.data.append(self.read(arg[1:], strip_newlines=kind == "ascii"))

    def urlencoded(self, arg: str) -> str:
        # curl: the first '=' splits name and content; without one, the first '@' splits
        # name and a file name; without either, all of it is content
        sep = arg.find("=")
        if sep < 0:
            sep = arg.find("@")
        if sep < 0:
            return urlencode(arg.encode())
        name, kind, rest = arg[:sep], arg[sep], arg[sep + 1:]
        content = self.read(rest) if kind == "@" else rest.encode()
        return f"{name}={urlencode(content)}" if name else urlencode(content)

    def add_form(self, arg: str, literal: bool) -> None:
        name, eq, value = arg.partition("=")
        if not eq:
            self.note(f"form field {arg!r} has no '='; left out")
            return
        ctype = filename = None
        if not literal:
            parts = value.split(";")
            value = parts[0]
            for p in parts[1:]:
                key, _, v = p.strip().partition("=")
                if key == "type":
                    ctype = v
                elif key == "filename":
                    filename = v.strip('"')
                else:
                    self.note(f"form field {name!r}: ;{key}= is not mapped; left out")
        if not literal and value.startswith("@"):
            path = value[1:]
            content = self.read(path)
            filename = filename if filename is not None else os.path.basename(path)
            ctype = ctype or _MIME.get(path.rsplit(".", 1)[-1].lower(), "application/octet-stream")
        elif not literal and value.startswith("<"):
            content = self.read(value[1:])
        else:
            content = value.encode()
        self.form.append((name, content, filename, ctype))

    def multipart(self) -> bytes:
        out = b""
        for name, content, filename, ctype in self.form:
            head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"'
            if filename is not None:
                head += f'; filename="{filename}"'
            if ctype:
                head += f"\r\nContent-Type: {ctype}"
            out += head.encode() + b"\r\n\r\n" + content + b"\r\n"
        return out + f"--{BOUNDARY}--\r\n".encode()

    def add_header(self, arg: str) -> None:
        if arg.startswith("@"):
            self.note(f"headers from file {arg[1:]!r} are not read; left out")
            return
        if ":" in arg:
            k, v = arg.split(":", 1)
            if not v.strip():  # "-H 'Accept:'": curl leaves that header out
                self.removed.append(k.strip())
                return
            self.headers.append((k.strip(), v.strip()))
        elif arg.endswith(";"):  # "-H 'X-Empty;'": the header with an empty value
            self.headers.append((arg[:-1].strip(), ""))
        else:
            self.note(f"header {arg!r} has no ':'; curl ignores it too")


def _expand_short(argv: list[str]) -> list[str]:
    """``-sSL`` → ``-s -S -L``; ``-XPOST`` → ``-X POST``."""
    out: list[str] = []
    for a in argv:
        if len(a) > 2 and a[0] == "-" and a[1] != "-":
            for k, ch in enumerate(a[1:], 1):
                if ch in _SHORT_VALUE:
                    out.append(f"-{ch}")
                    if a[k + 1:]:
                        out.append(a[k + 1:])
                    break
                out.append(f"-{ch}")
        else:
            out.append(a)
    return out


def parse(argv: list[str], where: str, base_dir: str | None, unmapped: list[str]) -> _Command:
    cmd = _Command(where, base_dir, unmapped)
    args = _expand_short(argv[1:])
    i = 0
    while i < len(args):
        a = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        step = 2
        if a in ("-X", "--request"):
            cmd.method = nxt.upper()
        elif a in ("-H", "--header"):
            cmd.add_header(nxt)
        elif a in _DATA:
            cmd.add_data(_DATA[a], nxt)
        elif a == "--json":
            cmd.json = True
            cmd.add_data("binary", nxt)
        elif a in ("-F", "--form", "--form-string"):
            cmd.add_form(nxt, literal=a == "--form-string")
        elif a == "--url-query":
            cmd.query.append(nxt[1:] if nxt.startswith("+") else cmd.urlencoded(nxt))
        elif a in ("-G", "--get"):
            cmd.get, step = True, 1
        elif a in ("-I", "--head"):
            cmd.head, step = True, 1
        elif a in ("-u", "--user"):
            if ":" not in nxt:
                cmd.note(f"-u {nxt!r} without a password: curl would ask for it; "
                         "sent with an empty password")
            token = base64.b64encode((nxt if ":" in nxt else nxt + ":").encode()).decode()
            cmd.headers.append(("Authorization", f"Basic {token}"))
        elif a in ("--digest", "--ntlm", "--negotiate", "--anyauth"):
            cmd.note(f"{a} authentication is not supported; sent as basic")
            step = 1
        elif a == "--basic":
            step = 1
        elif a in ("-A", "--user-agent"):
            cmd.headers.append(("User-Agent", nxt))
        elif a in ("-e", "--referer"):
            cmd.headers.append(("Referer", nxt.removesuffix(";auto")))
        elif a in ("-b", "--cookie"):
            if "=" in nxt:
                cmd.cookies.append(nxt)
            else:
                cmd.note(f"cookie file {nxt!r} is not read (each virtual user's cookie jar "
                         "carries the cookies the target sets)")
        elif a in ("-k", "--insecure"):
            cmd.insecure, step = True, 1
        elif a in ("-x", "--proxy"):
            cmd.proxy = nxt
        elif a == "--url":
            cmd.url = nxt
        elif a == "--http2-prior-knowledge":  # HTTP/2 over TCP: the plan's http2: h2c
            cmd.h2c, step = True, 1
        elif a == "--http2":
            cmd.note(f"{a}: the plan's http2 setting decides (docs/scenarios.md)")
            step = 1
        elif a in _QUIET:
            cmd.follow = cmd.follow or a in _FOLLOW
            step = 1
        elif a in _WITH_VALUE_IGNORED:
            pass
        elif a in _WITH_VALUE:
            cmd.note(f"option {a} {nxt!r} is not supported; ignored")
        elif a.startswith("-") and a != "-":
            cmd.note(f"option {a} is not supported; ignored")
            step = 1
        else:
            if cmd.url is not None:
                cmd.note(f"a second URL {a!r} is not sent (one step per command)")
            else:
                cmd.url = a
            step = 1
        i += step
    if not cmd.url:
        raise ImportError_(f"{where}: no URL")
    if "://" not in cmd.url:
        cmd.url = "http://" + cmd.url
    return cmd


def _step(cmd: _Command, taken: set[str], plan: dict[str, Any]) -> dict[str, Any] | None:
    where, url = cmd.where, cmd.url or ""
    body: bytes | None = None
    headers = list(cmd.headers)
    if cmd.form:
        if cmd.data:
            cmd.note("-F and -d together: curl refuses this; the form is sent")
        body = cmd.multipart()
        headers.append(("Content-Type", f"multipart/form-data; boundary={BOUNDARY}"))
    elif cmd.data:
        body = b"".join(cmd.data) if cmd.json else b"&".join(cmd.data)
    has = {k.lower() for k, _ in cmd.headers}
    path = path_of(url)
    if cmd.query:
        path += ("&" if "?" in path else "?") + "&".join(cmd.query)
    if body is not None and cmd.get and not cmd.form:
        path += ("&" if "?" in path else "?") + body.decode("latin-1")
        body = None
    method = cmd.method or ("HEAD" if cmd.head else "POST" if body is not None else "GET")
    if body is not None and not cmd.form and "content-type" not in has:
        headers.append(("Content-Type", "application/json" if cmd.json
                        else "application/x-www-form-urlencoded"))
    if cmd.json and "accept" not in has:
        headers.append(("Accept", "application/json"))
    if method not in METHODS:
        cmd.note(f"method {method} is not supported; not sent")
        return None
    if cmd.broken:
        return None
    text = None
    if body is not None:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            cmd.note("the body is not UTF-8 text (a plan's body is text); not sent")
            return None
    step: dict[str, Any] = {"name": step_name(method, path, taken), "method": method, "path": path}
    joined: dict[str, str] = {}
    for k, v in headers:
        same = next((n for n in joined if n.lower() == k.lower()), None)
        if same is not None:
            cmd.note(f"header {k} given twice: sent once as {joined[same]!r}, {v!r} joined by ', '")
            joined[same] = f"{joined[same]}, {v}"
        else:
            joined[k] = v
    clean = clean_headers(list(joined.items()), where, cmd.unmapped, host=urlsplit(url).netloc)
    if cmd.cookies:
        clean["Cookie"] = "; ".join(c.strip().rstrip(";") for c in cmd.cookies)
    for name in cmd.removed:
        if name.lower() in ("accept", "user-agent"):
            cmd.note(f"-H '{name}:' (leave the header out) is not mapped: the engine sends its own")
        clean = {k: v for k, v in clean.items() if k.lower() != name.lower()}
    if text is not None:
        step["body"] = text
    if clean:
        step["headers"] = clean
    if cmd.follow:  # -L: curl follows redirects, Surge only when told (docs/engine.md)
        step["follow_redirects"] = CURL_MAX_REDIRS
    if cmd.insecure:
        plan["insecure"] = True
    if cmd.h2c and urlsplit(url).scheme == "http" and not cmd.proxy:
        plan["http2"] = "h2c"
    elif cmd.h2c:
        cmd.note("--http2-prior-knowledge: h2c is for http:// URLs without a proxy; an https "
                 "target gets HTTP/2 by ALPN (http2: auto)")
    if cmd.proxy:
        proxy = cmd.proxy if "://" in cmd.proxy else f"http://{cmd.proxy}"
        if urlsplit(proxy).scheme in ("http", "https"):
            plan["proxy"] = proxy
        else:
            cmd.note(f"proxy {proxy} is not an http proxy; left out")
    return step


def convert(text: str, name: str = "curl-import", base_dir: str | None = ".") -> Imported:
    """``base_dir``: where ``@file`` names are read from; None: no file is read (uploads)."""
    if re.search(r'\^\r?\n|\^"', text):  # "Copy as cURL (cmd)": ^ escapes, not bash's quoting
        raise ImportError_("this is Windows cmd quoting (^): copy the request as cURL (bash) instead")
    try:
        found, kept = shell.commands(text)
    except shell.ShellError as exc:
        raise ImportError_(f"cannot split the command line: {exc}") from None
    unmapped: list[str] = [f"shell expansion {k.split()[0]!r} kept as written (not expanded)"
                           for k in kept]
    argvs = []
    for n, argv in enumerate(found):
        if os.path.basename(argv[0]) in ("curl", "curl.exe"):
            argvs.append(argv)
        elif argvs:  # a pipe or && after a curl command (| jq, && echo): not part of it
            unmapped.append(f"command {' '.join(argv)[:60]!r} is not curl; ignored")
    if not argvs:
        raise ImportError_("no curl command given")
    parsed = [parse(a, f"command {n + 1}", base_dir, unmapped) for n, a in enumerate(argvs)]
    target = main_origin([p.url or "" for p in parsed])
    if target is None:
        raise ImportError_("no http(s) URL in the curl command")
    steps: list[dict[str, Any]] = []
    taken: set[str] = set()
    plan: dict[str, Any] = {"name": name, "target": target, "timeout": "10s"}
    for cmd in parsed:
        if origin_of(cmd.url or "") != target:
            cmd.note(f"{cmd.url} is another origin than {target}; not sent")
            continue
        step = _step(cmd, taken, plan)
        if step is not None:
            steps.append(step)
    if not steps:
        raise ImportError_("no curl command could be mapped: " + "; ".join(unmapped)[:300])
    plan["flows"] = [{"name": "curl", "steps": steps}]
    return Imported(plan, unmapped)
