"""JMeter test plans (.jmx) → a plan.

Mapped: thread groups (threads, ramp-up, duration → the closed model's ``users``/
``user_stages``; each group a flow weighted by its threads), HTTP samplers and HTTP
Request Defaults (server name, port and protocol may use variables and properties:
resolved to their values), header managers (plan level → plan headers, sampler level →
step headers), cookie managers' cookies (→ a Cookie header), auth managers' BASIC
entries (→ an Authorization header on the samplers under their URL), CSV data sets (→
``data``, every option), constant and precise throughput timers (→ the open model's
``rate``), constant and uniform random timers (→ ``think``), regex and JSON extractors,
response and duration assertions, user-defined variables, ``${var}`` and the functions
``__UUID``, ``__Random``, ``__time``, ``__threadNum``, ``__RandomString``, ``__P`` and
``__property`` (no -J properties come with an import: JMeter's default is used, listed).
Simple controllers are flattened. Every other element (scripts, logic controllers'
conditions, listeners, ...) is listed with its element path (``TestPlan 'T' >
ThreadGroup 'Users' > HTTPSamplerProxy 'Login' > JSR223PostProcessor 'log'``).

JMeter's ``${...}`` expressions are read by ``jmx_functions``. JMX is parsed with the
standard library's ElementTree: the format is plain XML and the parser never fetches
entities or DTDs.
"""

from __future__ import annotations

import base64
import os
import re
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import unquote_plus

from services.plan.importers.common import METHODS, ImportError_, Imported, clean_headers, step_name
from services.plan.importers.jmx_functions import Expressions
from services.plan.templating import REF_RE, form_encode

_FLATTEN = {"GenericController", "TransactionController", "LoopController"}
_IGNORED = {"ResultCollector", "ViewResultsFullVisualizer", "SummaryReport", "Summariser",
            "BackendListener", "CacheManager", "DNSCacheManager"}


def _prop(el: ET.Element, name: str, default: str = "") -> str:
    for child in el:
        if child.get("name") == name:
            return child.text or "" if child.tag != "elementProp" else default
    return default


def _collection(el: ET.Element, name: str) -> list[ET.Element]:
    for child in el.iter("collectionProp"):
        if child.get("name") == name:
            return list(child)
    return []


def _arguments(el: ET.Element) -> list[tuple[str, str]]:
    return [(n, v) for n, v, _ in _http_arguments(el)]


def _http_arguments(el: ET.Element) -> list[tuple[str, str, bool]]:
    """(name, value, "URL Encode?") of each parameter."""
    out = []
    for arg in el.iter("elementProp"):
        if arg.get("elementType") in ("Argument", "HTTPArgument"):
            out.append((_prop(arg, "Argument.name"), _prop(arg, "Argument.value"),
                        _prop(arg, "HTTPArgument.always_encode", "false") == "true"))
    return out


def _form(text: str, encode: bool) -> str:
    """A parameter as JMeter sends it: encoded as a form field (static text now, each
    ``{{var}}`` when it is known, with ``| urlencode``), or as written."""
    if not encode:
        return text
    out, pos = [], 0
    for m in REF_RE.finditer(text):
        out.append(form_encode(text[pos:m.start()]))
        ref = m.group(1).strip()
        out.append(m.group(0) if ref.startswith("$") else "{{%s | urlencode}}" % ref)
        pos = m.end()
    return "".join(out) + form_encode(text[pos:])


class _Converter:
    def __init__(self, base_dir: str | None, out_dir: str) -> None:
        self.base_dir, self.out_dir = base_dir, out_dir
        self.unmapped: list[str] = []
        self.taken: set[str] = set()
        self.defaults: dict[str, str] = {}
        self.plan_headers: dict[str, str] = {}
        self.vars: dict[str, str] = {}
        self.data: list[dict[str, Any]] = []
        self.rate_per_min: float | None = None
        self.groups: list[dict[str, Any]] = []
        self.group_shared: list[str] = []  # CSV data sets shared per thread group
        self.cookies: list[str] = []  # cookie managers' user-defined cookies
        self.raw_vars: dict[str, str] = {}  # user-defined variables as written (for static fields)
        self.auth: list[tuple[str, str, str, str]] = []  # (url prefix, user, password, where)
        expressions = Expressions(self.unmapped, self.raw_vars)
        self.text = expressions.text  # a field sent with each request: ${...} → {{...}}
        self.static = expressions.static  # a field known now: variables resolved

    # --- walking the tree -----------------------------------------------------------------
    def walk(self, tree: ET.Element, scope: dict[str, Any]) -> None:
        """``tree`` is a hashTree: (element, its hashTree) pairs."""
        children = list(tree)
        k = 0
        while k < len(children):
            el = children[k]
            sub = children[k + 1] if k + 1 < len(children) and children[k + 1].tag == "hashTree" else None
            k += 2 if sub is not None else 1
            if el.get("enabled") == "false":
                continue
            self.element(el, sub if sub is not None else ET.Element("hashTree"), scope)

    def element(self, el: ET.Element, sub: ET.Element, scope: dict[str, Any]) -> None:
        tag, label = el.tag, el.get("testname") or el.tag
        where = f"{scope['where']} > {tag} {label!r}" if scope.get("where") else f"{tag} {label!r}"
        if tag == "TestPlan":
            for name, value in _arguments(el):
                if name:
                    self.raw_vars[name] = value
                    self.vars[name] = self.text(value, where)
            self.walk(sub, {**scope, "where": where})
        elif tag in ("ThreadGroup", "SetupThreadGroup", "PostThreadGroup"):
            if tag != "ThreadGroup":
                self.unmapped.append(f"{where}: setUp/tearDown thread groups are not mapped")
                return
            num = lambda key, default: _num(self.static(_prop(el, key), where), default)  # noqa: E731
            group = {"name": label, "threads": int(num("ThreadGroup.num_threads", 1)),
                     "ramp": num("ThreadGroup.ramp_time", 0),
                     "duration": num("ThreadGroup.duration", 0)
                     if _prop(el, "ThreadGroup.scheduler") == "true" else 0,
                     "steps": [], "headers": {}, "think": None}
            self.groups.append(group)
            self.walk(sub, {"group": group, "steps": group["steps"], "think": None, "where": where})
        elif tag == "ConfigTestElement" and _prop(el, "HTTPSampler.domain"):
            for key in ("domain", "port", "protocol"):
                self.defaults[key] = self.static(_prop(el, f"HTTPSampler.{key}"), where)
        elif tag == "HeaderManager":
            headers = {_prop(h, "Header.name"): self.text(_prop(h, "Header.value"), where)
                       for h in _collection(el, "HeaderManager.headers")}
            target = scope.get("step_headers")
            if target is not None:
                target.update(headers)
            elif scope.get("group") is not None:
                scope["group"]["headers"].update(headers)
            else:
                self.plan_headers.update(headers)
        elif tag == "CSVDataSet":
            self.csv(el, where)
        elif tag == "CookieManager":
            cookies = [f"{_prop(c, 'Cookie.name') or c.get('name')}={self.text(_prop(c, 'Cookie.value'), where)}"
                       for c in _collection(el, "CookieManager.cookies")]
            if cookies:  # cookies given up front; those the target sets live in each user's jar
                self.cookies += cookies
        elif tag == "AuthManager":
            for a in _collection(el, "AuthManager.auth_list"):
                mech = _prop(a, "Authorization.mechanism") or "BASIC"
                if mech != "BASIC":
                    self.unmapped.append(f"{where}: {mech} authentication is not supported; not sent")
                    continue
                self.auth.append((self.static(_prop(a, "Authorization.url"), where),
                                  self.text(_prop(a, "Authorization.username"), where),
                                  self.text(_prop(a, "Authorization.password"), where), where))
        elif tag == "PreciseThroughputTimer":
            period = _num(_prop(el, "throughputPeriod"), 3600) or 3600
            self.rate_per_min = (self.rate_per_min or 0) + _num(
                _prop(el, "throughput") or _double(el, "throughput"), 0) * 60 / period
        elif tag == "ConstantThroughputTimer":
            per_min = _num(_prop(el, "throughput") or _double(el, "throughput"), 0)
            mode = _prop(el, "calcMode", "0")
            if mode in ("0", "") and scope.get("group"):  # "this thread only": per thread
                per_min *= scope["group"]["threads"]
            self.rate_per_min = (self.rate_per_min or 0) + per_min
        elif tag == "ConstantTimer":
            scope["think"] = f"{_num(_prop(el, 'ConstantTimer.delay'), 0) / 1000:g}s"
            self._apply_think(scope)
        elif tag == "UniformRandomTimer":
            lo = _num(_prop(el, "ConstantTimer.delay"), 0) / 1000
            hi = lo + _num(_prop(el, "RandomTimer.range"), 0) / 1000
            scope["think"] = {"min": f"{lo:g}s", "max": f"{hi:g}s"}
            self._apply_think(scope)
        elif tag == "HTTPSamplerProxy" or tag == "HTTPSampler":
            if scope.get("steps") is None:
                self.unmapped.append(f"{where}: a sampler outside a thread group; skipped")
                return
            self.sampler(el, sub, scope, where)
        elif tag in _FLATTEN:
            if tag == "LoopController" and _prop(el, "LoopController.loops") not in ("", "1", "-1"):
                self.unmapped.append(f"{where}: loop count flattened to one pass")
            self.walk(sub, {**scope, "where": where})
        elif tag in ("IfController", "WhileController", "SwitchController", "ForeachController",
                     "OnceOnlyController", "RandomController", "ThroughputController"):
            self.unmapped.append(f"{where}: its condition/logic is not mapped; its samplers run every time")
            self.walk(sub, {**scope, "where": where})
        elif tag in ("RegexExtractor", "JSONPostProcessor", "ResponseAssertion", "DurationAssertion"):
            self.unmapped.append(f"{where}: outside a sampler; not mapped")
        elif tag in _IGNORED:
            self.unmapped.append(f"{where}: listeners/reporting are Surge's own; ignored")
        else:
            self.unmapped.append(f"{where}: not supported; ignored")

    def _apply_think(self, scope: dict[str, Any]) -> None:
        for step in scope.get("steps") or []:  # a timer applies to every sampler in its scope
            step.setdefault("think", scope["think"])

    def csv(self, el: ET.Element, where: str) -> None:
        """CSV Data Set Config, every option as JMeter reads it (its defaults included:
        quotedData false, recycle true, stopThread false, shareMode all)."""
        filename = _prop(el, "filename")
        if not filename:
            self.unmapped.append(f"{where}: no filename")
            return
        if self.base_dir is None:
            feed: dict[str, Any] = {"file": self.text(filename, where)}
            self.unmapped.append(f"{where}: data file {filename!r} does not come with an upload: "
                                 "give its rows (data rows) or import with `surge import` beside it")
        else:
            path = os.path.normpath(os.path.join(self.base_dir, self.text(filename, where)))
            feed = {"file": os.path.relpath(path, self.out_dir)}
        delimiter = _prop(el, "delimiter") or ","
        delimiter = "\t" if delimiter == "\\t" else delimiter
        if len(delimiter) != 1:
            self.unmapped.append(f"{where}: delimiter {delimiter!r} is more than one character; read as ','")
            delimiter = ","
        if delimiter != ",":
            feed["delimiter"] = delimiter
        if _prop(el, "quotedData", "false") != "true":
            feed["quoted"] = False  # JMeter's default: a quote is a plain character
        names = [n.strip() for n in _prop(el, "variableNames").split(delimiter) if n.strip()]
        if names:
            bad = [n for n in names if not re.fullmatch(r"[A-Za-z_]\w*", n)]
            if bad:
                self.unmapped.append(f"{where}: variable names {bad} are not plain names; "
                                     "the file's columns are named by its first line instead")
            else:
                feed["columns"] = names
                if _prop(el, "ignoreFirstLine", "false") == "true":
                    feed["skip_first_line"] = True
        # without variableNames JMeter names the columns from the first line (ignoreFirstLine
        # does not apply), exactly as a Surge feed without columns does
        recycle = _prop(el, "recycle", "true") != "false"
        stop = _prop(el, "stopThread", "false") == "true"
        feed["mode"] = "cycle" if recycle else "unique"
        if not recycle and not stop:
            self.unmapped.append(f"{where}: recycle=false, stopThread=false: after the last row JMeter "
                                 "goes on with <EOF> values; Surge's users stop when the rows run out")
        share = _prop(el, "shareMode") or "shareMode.all"
        if share == "shareMode.group":
            self.group_shared.append(where)  # the same as all when there is one thread group
        elif share != "shareMode.all":
            self.unmapped.append(f"{where}: share mode {share} (each thread reads the file from its "
                                 "start) is read as all threads sharing one sequence")
        encoding = _prop(el, "fileEncoding").strip().lower().replace("-", "")
        if encoding not in ("", "utf8", "utf16"):
            self.unmapped.append(f"{where}: file encoding {_prop(el, 'fileEncoding')}: Surge reads UTF-8 "
                                 "(or UTF-16 with a byte-order mark); save the file as UTF-8")
        self.data.append(feed)

    def sampler(self, el: ET.Element, sub: ET.Element, scope: dict[str, Any], where: str) -> None:
        method = (_prop(el, "HTTPSampler.method") or "GET").upper()
        if method not in METHODS:
            self.unmapped.append(f"{where}: method {method} is not supported; skipped")
            return
        files = [f for f in el.iter("elementProp") if f.get("elementType") == "HTTPFileArg"
                 and _prop(f, "File.path")]
        if files or _prop(el, "HTTPSampler.DO_MULTIPART_POST") == "true":
            self.unmapped.append(f"{where}: a multipart body / file upload is not mapped; not sent")
            return
        if _prop(el, "HTTPSampler.follow_redirects") == "false" and _prop(el, "HTTPSampler.auto_redirects") != "true":
            self.unmapped.append(f"{where}: JMeter does not follow redirects here; the engine does")
        for key in ("domain", "port", "protocol"):
            value = self.static(_prop(el, f"HTTPSampler.{key}"), where)
            if value and value != self.defaults.get(key):
                if self.defaults.get(key) and key == "domain":
                    self.unmapped.append(f"{where}: domain {value} differs "
                                         "from the plan's target; sent to the target")
                self.defaults.setdefault(key, value)
        path = self.text(_prop(el, "HTTPSampler.path") or "/", where)
        if not path.startswith("/") and not path.startswith("{{"):
            path = "/" + path
        args = [(self.text(n, where), self.text(v, where), enc) for n, v, enc in _http_arguments(el)]
        step: dict[str, Any] = {"name": step_name(method, path, self.taken, hint=el.get("testname")),
                                "method": method, "path": path}
        if _prop(el, "HTTPSampler.postBodyRaw") == "true" and args:
            body = args[0][1]
            step["body"] = body
        elif args:
            if method in ("GET", "DELETE", "HEAD", "OPTIONS"):  # the query: encoded when asked
                query = "&".join(f"{_form(n, e)}={_form(v, e)}" for n, v, e in args)
                step["path"] = path + ("&" if "?" in path else "?") + query
            else:  # a form body: JMeter always encodes it (a value not marked is decoded first)
                step["body"] = "&".join(
                    f"{_form(n if e else unquote_plus(n), True)}={_form(v if e else unquote_plus(v), True)}"
                    for n, v, e in args)
                step.setdefault("headers", {})["Content-Type"] = "application/x-www-form-urlencoded"
        headers: dict[str, str] = {}
        inner = {**scope, "step_headers": headers, "step": step}
        self.sampler_children(sub, inner, where)
        if headers:
            step["headers"] = {**step.get("headers", {}),
                               **clean_headers(list(headers.items()), where, self.unmapped)}
        if scope.get("think"):
            step.setdefault("think", scope["think"])
        scope["steps"].append(step)

    def sampler_children(self, sub: ET.Element, scope: dict[str, Any], where: str) -> None:
        step = scope["step"]
        children = [c for c in sub if c.tag != "hashTree" and c.get("enabled") != "false"]
        for el in children:
            tag = el.tag
            inner_where = f"{where} > {tag} {el.get('testname')!r}"
            if tag == "HeaderManager":
                self.element(el, ET.Element("hashTree"), scope)
            elif tag == "RegexExtractor":
                ref = _prop(el, "RegexExtractor.refname")
                template = _prop(el, "RegexExtractor.template") or "$1$"
                m = re.fullmatch(r"\$(\d+)\$", template)
                spec: dict[str, Any] = {"regex": _prop(el, "RegexExtractor.regex"), "group": int(m.group(1)) if m else 1}
                if not m:
                    self.unmapped.append(f"{inner_where}: template {template!r} read as group 1")
                if _prop(el, "RegexExtractor.default"):
                    spec["default"] = _prop(el, "RegexExtractor.default")
                if _prop(el, "RegexExtractor.match_number") not in ("", "1"):
                    self.unmapped.append(f"{inner_where}: match number read as the first match")
                if _prop(el, "RegexExtractor.useHeaders") not in ("", "false"):
                    self.unmapped.append(f"{inner_where}: applied to the body, not the headers")
                step.setdefault("extract", {})[ref] = spec
            elif tag == "JSONPostProcessor":
                names = _prop(el, "JSONPostProcessor.referenceNames").split(";")
                exprs = _prop(el, "JSONPostProcessor.jsonPathExprs").split(";")
                defaults = _prop(el, "JSONPostProcessor.defaultValues").split(";")
                for n, (name, expr) in enumerate(zip(names, exprs)):
                    spec = {"jsonpath": expr.strip()}
                    if n < len(defaults) and defaults[n]:
                        spec["default"] = defaults[n]
                    step.setdefault("extract", {})[name.strip()] = spec
            elif tag == "ResponseAssertion":
                self.assertion(el, step, inner_where)
            elif tag == "DurationAssertion":
                step.setdefault("check", {})["max_ms"] = _num(_prop(el, "DurationAssertion.duration"), 1000)
            elif tag in ("ConstantTimer", "UniformRandomTimer"):
                local: dict[str, Any] = {"steps": [step], "think": None}
                step.pop("think", None)
                self.element(el, ET.Element("hashTree"), local)
            else:
                self.unmapped.append(f"{inner_where}: not supported; ignored")

    def assertion(self, el: ET.Element, step: dict[str, Any], where: str) -> None:
        field = _prop(el, "Assertion.test_field")
        test_type = int(_num(_prop(el, "Assertion.test_type"), 16))
        negate = bool(test_type & 4)
        strings = [s.text or "" for s in _collection(el, "Asserion.test_strings")]
        strings += [s.text or "" for s in _collection(el, "Assertion.test_strings")]
        check = step.setdefault("check", {})
        if not strings:
            return
        if field == "Assertion.response_code" and not negate:
            codes = [int(s) for s in strings if s.strip().isdigit()]
            check["status"] = codes[0] if len(codes) == 1 else codes
        elif field in ("Assertion.response_data", ""):
            first = self.text(strings[0], where)
            if test_type & 1 or test_type & 2 and not negate and any(c in first for c in "[]()*+?\\"):
                if negate:
                    self.unmapped.append(f"{where}: a negated pattern match is not mapped")
                else:
                    check["regex"] = first if test_type & 2 else f"^(?:{first})$"
            elif negate:
                check["not_contains"] = first
            else:
                check["contains"] = first
            if len(strings) > 1:
                self.unmapped.append(f"{where}: only the first of {len(strings)} patterns is checked")
        else:
            self.unmapped.append(f"{where}: assertion on {field} is not mapped")
        if not check:
            step.pop("check")


def _num(text: str, default: float) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


def _double(el: ET.Element, name: str) -> str:
    for child in el.iter():  # <doubleProp><name>throughput</name><value>600.0</value>
        if child.tag in ("doubleProp", "floatProp") and name in (child.get("name"), child.findtext("name")):
            return child.findtext("value") or ""
    return ""


def convert(text: str, name: str | None = None, base_dir: str | None = ".", out_dir: str = ".",
            target: str | None = None) -> Imported:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ImportError_(f"not XML: {exc}") from None
    if root.tag != "jmeterTestPlan" or root.find("hashTree") is None:
        raise ImportError_("not a JMeter test plan (expected <jmeterTestPlan><hashTree>)")
    conv = _Converter(base_dir, out_dir)
    conv.walk(root.find("hashTree"), {"group": None, "steps": None, "think": None, "where": ""})
    groups = [g for g in conv.groups if g["steps"]]
    if not groups:
        raise ImportError_("no thread group with an HTTP sampler")
    d = conv.defaults
    origin = target
    if not origin:
        if not d.get("domain"):
            raise ImportError_("no server name in the samplers or HTTP Request Defaults (use --target)")
        proto = d.get("protocol") or "http"
        port = d.get("port")
        origin = f"{proto}://{d['domain']}" + (f":{port}" if port else "")
    testplan = root.find("hashTree/TestPlan")
    plan: dict[str, Any] = {
        "name": re.sub(r"[^A-Za-z0-9_.:\-/ ]+", "_", name or (testplan.get("testname") if testplan is not None else "") or "jmeter")[:100],
        "target": origin, "timeout": "10s",
    }
    users = sum(g["threads"] for g in groups)
    ramp = max(g["ramp"] for g in groups)
    duration = max(g["duration"] for g in groups) or 60
    if conv.rate_per_min:
        plan["rate"] = round(conv.rate_per_min / 60, 3)
        plan["duration"] = f"{duration:g}s"
        conv.unmapped.append(f"constant throughput timer: open model at {plan['rate']:g}/s "
                             f"(JMeter's {users} threads become the arrival rate's concurrency cap)")
        plan["connections"] = max(users, 1)
    elif ramp > 0:
        plan["user_stages"] = [{"duration": f"{ramp:g}s", "target": users},
                               {"duration": f"{max(duration - ramp, 1):g}s", "target": users}]
    else:
        plan["users"] = users
        plan["duration"] = f"{duration:g}s"
    if not any(g["duration"] for g in groups):
        conv.unmapped.append("thread groups run by loop count; Surge runs for a duration (60s)")
    for prefix, user, password, where in conv.auth:
        if "{{" in user + password:
            conv.unmapped.append(f"{where}: credentials built from variables are not mapped; not sent")
            continue
        header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        for g in groups:
            for step in g["steps"]:
                if not prefix or (origin + step["path"]).startswith(prefix) or step["path"].startswith(prefix):
                    step.setdefault("headers", {}).setdefault("Authorization", header)
    headers = dict(conv.plan_headers)
    if len(groups) == 1:
        headers.update(groups[0]["headers"])
    else:
        for g in groups:
            for step in g["steps"]:
                step["headers"] = {**g["headers"], **step.get("headers", {})}
    headers = clean_headers(list(headers.items()), "header manager", conv.unmapped)
    if conv.cookies:
        headers["Cookie"] = "; ".join(conv.cookies)
    if headers:
        plan["headers"] = headers
    if conv.vars:
        plan["vars"] = {k: v for k, v in conv.vars.items() if re.fullmatch(r"[A-Za-z_]\w*", k)}
    if conv.data:
        plan["data"] = conv.data
    if len(groups) > 1:
        conv.unmapped += [f"{w}: share mode 'current thread group' is read as all thread groups "
                          "sharing one sequence" for w in conv.group_shared]
    plan["flows"] = [{"name": step_name("", "", set(), hint=g["name"]), "weight": g["threads"],
                      "steps": g["steps"]} for g in groups]
    return Imported(plan, conv.unmapped)
