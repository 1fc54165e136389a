"""Reading responses: extractors (values into variables) and checks (pass/fail). Pure.

Both are compiled once per plan from ``schemas.plan.Extract`` / ``StepCheck``. A
``Response`` parses its body lazily and at most once (JSON with msgspec, HTML with
lxml), however many extractors and checks read it.

JSONPath is ``jsonpath-ng`` (its extended parser: filters, arithmetic); XPath and CSS
are lxml (CSS through cssselect's translation to XPath).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.jsonpath import Child, Fields, Index, Root
from jsonpath_ng.ext import parse as _jsonpath_parse
from msgspec import UNSET

from schemas.plan import Extract, StepCheck
from services.plan.templating import Template

_NOT_FOUND = object()


class ExtractError(ValueError):
    """An expression that does not compile (reported as a plan error)."""


def compile_jsonpath(expr: str):
    try:
        parsed = _jsonpath_parse(expr)
    except (JsonPathParserError, Exception) as exc:  # the parser raises bare Exceptions too
        raise ExtractError(f"bad JSONPath {expr!r}: {exc}") from None
    steps = _path_steps(parsed)
    return parsed if steps is None else DottedPath(steps, parsed)


def _path_steps(parsed) -> list[str | int] | None:
    """``$.a.b[0].c`` as ["a", "b", 0, "c"]: only names and non-negative indices (the
    library's own parse, read back); None for anything else (filters, slices, ``..``)."""
    steps: list[str | int] = []
    node = parsed
    while isinstance(node, Child):
        right = node.right
        if type(right) is Fields and len(right.fields) == 1 and right.fields[0] != "*":
            steps.append(right.fields[0])
        elif type(right) is Index and len(right.indices) == 1 and right.indices[0] >= 0:
            steps.append(right.indices[0])
        else:
            return None
        node = node.left
    if type(node) is not Root or not steps:
        return None
    steps.reverse()
    return steps


class DottedPath:
    """A JSONPath of names and indices only, walked directly: the first match is what
    jsonpath-ng's would be (tested side by side on the same documents), at a fraction of
    the cost. Whatever the walk does not handle plainly (an index into something other
    than a list or string) goes to the library, quirks and all."""

    __slots__ = ("steps", "parsed")

    def __init__(self, steps: list[str | int], parsed) -> None:
        self.steps, self.parsed = steps, parsed

    def find(self, doc: Any):
        return self.parsed.find(doc)

    def first(self, doc: Any) -> Any:
        value = doc
        for step in self.steps:
            if step.__class__ is str:
                if value.__class__ is not dict:
                    return _NOT_FOUND
                value = value.get(step, _NOT_FOUND)
                if value is _NOT_FOUND:
                    return _NOT_FOUND
            elif value.__class__ is list or value.__class__ is str:
                if not value or step >= len(value):
                    return _NOT_FOUND
                value = value[step]
            else:
                matches = self.parsed.find(doc)
                return matches[0].value if matches else _NOT_FOUND
        return value


def compile_regex(expr: str) -> re.Pattern:
    try:
        return re.compile(expr)
    except re.error as exc:
        raise ExtractError(f"bad regex {expr!r}: {exc}") from None


def compile_xpath(expr: str):
    from lxml import etree

    try:
        return etree.XPath(expr)
    except etree.XPathSyntaxError as exc:
        raise ExtractError(f"bad XPath {expr!r}: {exc}") from None


def compile_css(expr: str):
    from lxml.cssselect import CSSSelector, SelectorSyntaxError

    try:
        return CSSSelector(expr)
    except (SelectorSyntaxError, Exception) as exc:
        raise ExtractError(f"bad CSS selector {expr!r}: {exc}") from None


class Response:
    """What extractors and checks see of one response."""

    __slots__ = ("status", "headers", "body", "cookies", "elapsed_s", "_json", "_html")

    def __init__(
        self, status: int, headers: Mapping[str, str], body: bytes,
        cookies: Mapping[str, str] | None = None, elapsed_s: float = 0.0,
    ) -> None:
        self.status = status
        self.headers = headers  # case-insensitive mapping (head.Head; a CIMultiDict on HTTP/2)
        self.body = body
        self.cookies = cookies or {}
        self.elapsed_s = elapsed_s
        self._json: Any = _NOT_FOUND
        self._html: Any = _NOT_FOUND

    def json(self) -> Any:
        if self._json is _NOT_FOUND:
            try:
                self._json = msgspec.json.decode(self.body) if self.body else None
            except msgspec.DecodeError:
                self._json = None
        return self._json

    def html(self):
        if self._html is _NOT_FOUND:
            from lxml import html as lxml_html

            try:
                self._html = lxml_html.fromstring(self.body) if self.body.strip() else None
            except Exception:  # lxml's ParserError and friends: not HTML
                self._html = None
        return self._html

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _first_jsonpath(expr, resp: Response) -> Any:
    doc = resp.json()
    if doc is None:
        return _NOT_FOUND
    if expr.__class__ is DottedPath:
        return expr.first(doc)
    matches = expr.find(doc)
    return matches[0].value if matches else _NOT_FOUND


def _node_value(node: Any, attr: str | None) -> Any:
    if attr is not None:
        return node.get(attr, _NOT_FOUND) if hasattr(node, "get") else _NOT_FOUND
    if hasattr(node, "text_content"):
        return node.text_content().strip()
    return str(node)  # xpath strings (text(), @attr) and numbers


class Extractor:
    """One variable's source in a response, compiled."""

    __slots__ = ("var", "kind", "expr", "group", "attr", "default")

    def __init__(self, var: str, rule: Extract) -> None:
        self.var = var
        self.group = rule.group
        self.attr = rule.attr
        self.default = rule.default
        sources = {
            k: v for k, v in (
                ("jsonpath", rule.jsonpath), ("regex", rule.regex), ("header", rule.header),
                ("cookie", rule.cookie), ("xpath", rule.xpath), ("css", rule.css),
                ("value", rule.value),
            ) if v is not None
        }
        if len(sources) != 1:
            raise ExtractError(
                "give exactly one of jsonpath, regex, header, cookie, xpath, css, value"
            )
        (self.kind, text), = sources.items()
        if self.kind == "jsonpath":
            self.expr = compile_jsonpath(text)
        elif self.kind == "regex":
            self.expr = compile_regex(text)
            if self.group > self.expr.groups:
                raise ExtractError(f"regex {text!r} has no group {self.group}")
        elif self.kind == "xpath":
            self.expr = compile_xpath(text)
        elif self.kind == "css":
            self.expr = compile_css(text)
        elif self.kind == "value":
            self.expr = Template(text)
        else:
            self.expr = text

    def __call__(self, resp: Response, variables: Mapping[str, Any]) -> Any:
        """The value, the default, or raise LookupError when neither."""
        value = self._find(resp, variables)
        if value is _NOT_FOUND:
            if self.default is None:
                raise LookupError(f"{self.kind} found nothing for {self.var}")
            return self.default
        return value

    def _find(self, resp: Response, variables: Mapping[str, Any]) -> Any:
        kind = self.kind
        if kind == "jsonpath":
            return _first_jsonpath(self.expr, resp)
        if kind == "regex":
            m = self.expr.search(resp.text())
            return m.group(self.group) if m else _NOT_FOUND
        if kind == "header":
            return resp.headers.get(self.expr, _NOT_FOUND)
        if kind == "cookie":
            return resp.cookies.get(self.expr, _NOT_FOUND)
        if kind == "value":
            return self.expr.value(variables)
        doc = resp.html()
        if doc is None:
            return _NOT_FOUND
        nodes = self.expr(doc)
        if not isinstance(nodes, list):  # xpath returning a string or number
            return _NOT_FOUND if nodes in ("", None) else _node_value(nodes, None)
        for node in nodes:
            v = _node_value(node, self.attr)
            if v is not _NOT_FOUND:
                return v
        return _NOT_FOUND


class Checker:
    """A step's assertions, compiled. ``__call__`` gives None, "status" or "check"."""

    __slots__ = ("allowed", "contains", "not_contains", "regex", "body_min", "body_max",
                 "jsonpaths", "max_s", "wants_body")

    def __init__(self, check: StepCheck | None) -> None:
        check = check or StepCheck()
        st = check.status
        self.allowed = None if st is None else frozenset(st if isinstance(st, list) else [st])
        self.contains = check.contains.encode() if check.contains else None
        self.not_contains = check.not_contains.encode() if check.not_contains else None
        self.regex = compile_regex(check.regex) if check.regex else None
        self.body_min, self.body_max = check.body_min, check.body_max
        self.jsonpaths = [
            (compile_jsonpath(j.path),
             Template(j.equals) if isinstance(j.equals, str) and "{{" in j.equals else j.equals)
            for j in check.jsonpath
        ]
        self.max_s = check.max_ms / 1000.0 if check.max_ms else None

    def __call__(self, resp: Response, variables: Mapping[str, Any] | None = None) -> str | None:
        if self.allowed is None:
            if resp.status >= 400:
                return "status"
        elif resp.status not in self.allowed:
            return "status"
        body = resp.body
        if self.contains is not None and self.contains not in body:
            return "check"
        if self.not_contains is not None and self.not_contains in body:
            return "check"
        if self.regex is not None and not self.regex.search(resp.text()):
            return "check"
        if self.body_min is not None and len(body) < self.body_min:
            return "check"
        if self.body_max is not None and len(body) > self.body_max:
            return "check"
        for expr, equals in self.jsonpaths:
            found = _first_jsonpath(expr, resp)
            if isinstance(equals, Template):  # compared with a variable's value
                try:
                    equals = equals.value(variables or {})
                except KeyError:
                    return "check"
            if found is _NOT_FOUND or (equals is not UNSET and found != equals):
                return "check"
        if self.max_s is not None and resp.elapsed_s > self.max_s:
            return "check"
        return None
