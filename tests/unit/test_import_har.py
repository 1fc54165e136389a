"""HAR → plan: form bodies recorded only as params, multipart, binary, redirects, origins."""

from __future__ import annotations

import base64
import json

import pytest

from services.plan.importers import common, har
from tests.forms import multipart


def har_of(*entries: dict) -> str:
    return json.dumps({"log": {"version": "1.2", "entries": list(entries)}})


def entry(url: str, method: str = "GET", post: dict | None = None, status: int = 200,
          headers: list | None = None, redirect: str = "") -> dict:
    req = {"method": method, "url": url, "headers": headers or [], "queryString": []}
    if post is not None:
        req["postData"] = post
    return {"startedDateTime": "2026-01-01T00:00:00.000Z", "time": 1, "request": req,
            "response": {"status": status, "headers": [], "redirectURL": redirect, "content": {}}}


def steps(text: str, **kw) -> tuple[list[dict], list[str]]:
    imp = har.convert(text, **kw)
    return imp.plan["flows"][0]["steps"], imp.unmapped


def test_urlencoded_params_without_text_become_the_form_body():
    post = {"mimeType": "application/x-www-form-urlencoded",
            "params": [{"name": "user", "value": "ann b"}, {"name": "pass", "value": "mp+8/ay~*&="}]}
    [step], unmapped = steps(har_of(entry("http://h/login", "POST", post)))
    assert step["body"] == "user=ann+b&pass=mp%2B8%2Fay%7E*%26%3D"
    assert step["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert unmapped == []


def test_multipart_params_build_the_form_and_list_missing_file_content():
    post = {"mimeType": "multipart/form-data; boundary=x", "params": [
        {"name": "title", "value": "hi"},
        {"name": "doc", "fileName": "a.txt", "contentType": "text/plain", "value": "hello"},
        {"name": "pic", "fileName": "p.png", "contentType": "image/png"}]}
    [step], unmapped = steps(har_of(entry("http://h/up", "POST", post)))
    b = har.BOUNDARY
    assert step["headers"]["Content-Type"] == f"multipart/form-data; boundary={b}"
    assert step["body"] == multipart(b, ("title", "hi"), ("doc", "hello", "a.txt", "text/plain"),
                                     ("pic", "", "p.png", "image/png"))
    assert unmapped == ["entry 0 (POST http://h/up): file 'p.png' of field 'pic': its content is "
                        "not in the HAR; sent empty"]


def test_base64_bodies_decode_and_binary_ones_are_listed_not_sent():
    text = base64.b64encode("{\"ü\": 1}".encode()).decode()
    binary = base64.b64encode(b"\xff\xd8\xff").decode()
    got, unmapped = steps(har_of(
        entry("http://h/a", "POST", {"mimeType": "application/json", "text": text, "encoding": "base64"}),
        entry("http://h/b", "POST", {"mimeType": "image/jpeg", "text": binary, "encoding": "base64"})))
    assert [s["path"] for s in got] == ["/a"] and got[0]["body"] == '{"ü": 1}'
    assert any("binary" in u and "/b" in u for u in unmapped)


def test_a_followed_redirect_is_one_step_ending_on_the_final_status():
    got, _ = steps(har_of(entry("http://h/login", "POST", {"mimeType": "text/plain", "text": "x"},
                                status=302, redirect="/home"),
                          entry("http://h/home", status=200), entry("http://h/next")))
    assert [(s["path"], s["check"]["status"]) for s in got] == [("/login", 200), ("/next", 200)]


def test_other_origins_are_listed_and_origin_picks_which_to_keep():
    text = har_of(entry("http://h/a"), entry("http://h/b"), entry("https://cdn.test/x.js"))
    got, unmapped = steps(text)
    assert [s["path"] for s in got] == ["/a", "/b"]
    assert unmapped == ["entry 2 (GET https://cdn.test/x.js): another origin than http://h; not sent"]
    got, unmapped = steps(text, origin="https://cdn.test/")
    assert [s["path"] for s in got] == ["/x.js"] and len(unmapped) == 2
    with pytest.raises(common.ImportError_, match="no request in the HAR goes to http://other"):
        har.convert(text, origin="http://other")
