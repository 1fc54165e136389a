"""Extractors and checks on responses (services/plan/extract.py)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from schemas.plan import Extract, JsonPathCheck, StepCheck
from services.plan.extract import Checker, ExtractError, Extractor, Response

JSON = b'{"token": "t-1", "user": {"id": 7, "roles": ["a", "b"]}, "items": [{"sku": "X", "n": 2}, {"sku": "Y", "n": 5}]}'
HTML = (b'<html><body><form><input type="hidden" name="csrf" value="c-9"></form>'
        b'<ul><li><a class="p" href="/p/1">One</a></li><li><a class="p" href="/p/2">Two</a></li></ul>'
        b'<h1> Title </h1></body></html>')


def resp(body: bytes = JSON, status: int = 200, **kw) -> Response:
    headers = CIMultiDict({"Content-Type": "application/json", "X-Request-Id": "rq-5"})
    return Response(status, headers, body, **kw)


def ex(var="v", **spec):
    return Extractor(var, Extract(**spec))


def test_jsonpath():
    assert ex(jsonpath="$.token")(resp(), {}) == "t-1"
    assert ex(jsonpath="$.user.id")(resp(), {}) == 7
    assert ex(jsonpath="$.items[1].sku")(resp(), {}) == "Y"
    assert ex(jsonpath="$.items[?(@.n > 3)].sku")(resp(), {}) == "Y"  # filters (jsonpath-ng ext)


def test_not_found_raises_unless_default():
    with pytest.raises(LookupError):
        ex(jsonpath="$.nope")(resp(), {})
    assert ex(jsonpath="$.nope", default="d")(resp(), {}) == "d"
    with pytest.raises(LookupError):
        ex(jsonpath="$.token")(resp(b"not json"), {})


def test_regex_group():
    assert ex(regex=r'"token": "([^"]+)"')(resp(), {}) == "t-1"
    assert ex(regex=r'"token": "[^"]+"', group=0)(resp(), {}) == '"token": "t-1"'


def test_header_and_cookie():
    assert ex(header="x-request-id")(resp(), {}) == "rq-5"
    assert ex(cookie="sid")(resp(cookies={"sid": "s-1"}), {}) == "s-1"
    with pytest.raises(LookupError):
        ex(cookie="sid")(resp(), {})


def test_xpath_and_css_on_html():
    page = resp(HTML)
    assert ex(xpath="//input[@name='csrf']/@value")(page, {}) == "c-9"
    assert ex(xpath="//a[@class='p']")(page, {}) == "One"
    assert ex(xpath="//h1/text()")(page, {}) == " Title "
    assert ex(css="a.p", attr="href")(page, {}) == "/p/1"
    assert ex(css="h1")(page, {}) == "Title"
    with pytest.raises(LookupError):
        ex(css="a.missing")(page, {})


def test_fixed_value_is_templated():
    assert ex(value="user-{{n}}")(resp(), {"n": 3}) == "user-3"


@pytest.mark.parametrize("spec", [
    {"jsonpath": "$..[?("}, {"regex": "("}, {"xpath": "//["}, {"css": "a[["},
    {"regex": "abc", "group": 1}, {}, {"jsonpath": "$.a", "regex": "b"},
])
def test_bad_expressions_fail_at_compile_time(spec):
    with pytest.raises(ExtractError):
        ex(**spec)


def test_checks():
    ok = resp()
    assert Checker(None)(ok) is None
    assert Checker(None)(resp(status=404)) == "status"
    assert Checker(StepCheck(status=[200, 201]))(resp(status=201)) is None
    assert Checker(StepCheck(status=200))(resp(status=201)) == "status"
    assert Checker(StepCheck(contains="t-1"))(ok) is None
    assert Checker(StepCheck(contains="zzz"))(ok) == "check"
    assert Checker(StepCheck(not_contains="t-1"))(ok) == "check"
    assert Checker(StepCheck(regex=r'"n": \d'))(ok) is None
    assert Checker(StepCheck(body_min=10, body_max=1000))(ok) is None
    assert Checker(StepCheck(body_max=10))(ok) == "check"
    assert Checker(StepCheck(body_min=10_000))(ok) == "check"
    assert Checker(StepCheck(max_ms=100))(resp(elapsed_s=0.05)) is None
    assert Checker(StepCheck(max_ms=100))(resp(elapsed_s=0.15)) == "check"


def test_jsonpath_checks():
    ok = resp()
    assert Checker(StepCheck(jsonpath=[JsonPathCheck("$.user.id", 7)]))(ok) is None
    assert Checker(StepCheck(jsonpath=[JsonPathCheck("$.user.id", 8)]))(ok) == "check"
    assert Checker(StepCheck(jsonpath=[JsonPathCheck("$.token")]))(ok) is None  # exists
    assert Checker(StepCheck(jsonpath=[JsonPathCheck("$.nope")]))(ok) == "check"
    assert Checker(StepCheck(jsonpath=[JsonPathCheck("$.user.roles", ["a", "b"])]))(ok) is None
    templated = Checker(StepCheck(jsonpath=[JsonPathCheck("$.token", "{{tok}}")]))
    assert templated(ok, {"tok": "t-1"}) is None
    assert templated(ok, {"tok": "t-2"}) == "check"
    assert templated(ok, {}) == "check"


def test_response_body_is_parsed_once():
    r = resp()
    assert r.json() is r.json()
    page = resp(HTML)
    assert page.html() is page.html()


DOCS = [
    {"a": {"b": [1, {"c": None}], "s": "xyz"}, "len": 3, "this": 2, "id": 9, "0": "zero",
     "items": [{"sku": "X"}, {"sku": "Y"}], "t": True, "e": [], "n": 0},
    [10, 20, {"a": 1}], "abc", 5, 1.5, True, {"a": [1, 2, 3]}, {"a": {"0": 1}}, {"a": "xyz"}, {},
]


@pytest.mark.parametrize("path", [
    "$.a", "$.a.b", "$.a.b[0]", "$.a.b[1].c", "$.a.b[7]", "$.a.s[1]", "$[0]", "$[2].a", "$[9]",
    "$.len", "$.this", "$.id", "$.items[1].sku", "$.e[0]", "$.n", "$.t", "$.missing.x", "$.a[0]",
])
def test_dotted_jsonpaths_find_what_jsonpath_ng_finds(path):
    """Names and indices are walked directly (extract.DottedPath): the same first match as
    the library's on the same documents; what the walk does not handle plainly (an index
    into a dict, a number, a bool) is the library's answer, exception included."""
    from jsonpath_ng.ext import parse

    from services.plan.extract import DottedPath, _NOT_FOUND, compile_jsonpath

    fast, lib = compile_jsonpath(path), parse(path)
    assert isinstance(fast, DottedPath)
    for doc in DOCS:
        try:
            matches = lib.find(doc)
            want: object = matches[0].value if matches else _NOT_FOUND
        except Exception as exc:  # the library's quirk: KeyError/TypeError on a bad index
            with pytest.raises(type(exc)):
                fast.first(doc)
            continue
        assert fast.first(doc) == want, doc


def test_other_jsonpaths_stay_the_librarys():
    from services.plan.extract import DottedPath, compile_jsonpath

    for path in ["$.a[*]", "$..a", "$.a[-1]", "$.a[0,1]", "$.a,b", "$.*", "$.items[?(@.n > 3)].sku"]:
        assert not isinstance(compile_jsonpath(path), DottedPath)
