"""Pre-encoded HTTP/1.1 requests (services/generator/http.py: encode_request, target_address)."""

from __future__ import annotations

import json

import pytest

from services.plan import loader
from services.generator.http import USER_AGENT, encode_request, target_address
from tests import plans


def parse(payload: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, sep, body = payload.partition(b"\r\n\r\n")
    assert sep == b"\r\n\r\n"
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(": ")
        assert colon, line
        headers.append((name, value))
    return lines[0], headers, body


def header_values(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def encoded(plan, i=0):
    return encode_request(plan, plan.requests[i], target_address(plan)[2])


def test_target_address_splits_host_port_and_host_header():
    assert target_address(plans.plan(requests=[{"name": "a"}])) == ("127.0.0.1", 8080, "127.0.0.1:8080")
    assert target_address(plans.plan(requests=[{"name": "a"}], target="http://api.example.com")) == (
        "api.example.com", 80, "api.example.com"
    )
    assert target_address(plans.plan(requests=[{"name": "a"}], target="http://[::1]:9000")) == ("::1", 9000, "[::1]:9000")


def test_get_has_request_line_host_and_user_agent_and_no_body():
    line, headers, body = parse(encoded(plans.plan(requests=[{"name": "a", "path": "/items?id=7"}])))
    assert line == "GET /items?id=7 HTTP/1.1"
    assert header_values(headers, "Host") == ["127.0.0.1:8080"]
    assert header_values(headers, "User-Agent") == [USER_AGENT]
    assert header_values(headers, "Content-Length") == []
    assert body == b""


def test_payload_is_exact_bytes():
    payload = encoded(plans.plan(requests=[{"name": "a", "path": "/x"}], target="http://h:81"))
    assert payload == b"GET /x HTTP/1.1\r\nHost: h:81\r\nUser-Agent: surge/0.1\r\n\r\n"


def test_json_body_sets_content_type_and_length():
    plan = plans.plan(requests=[{"name": "a", "method": "POST", "path": "/api/orders", "json": {"sku": "A1", "qty": 1}}])
    line, headers, body = parse(encoded(plan))
    assert line == "POST /api/orders HTTP/1.1"
    assert json.loads(body) == {"sku": "A1", "qty": 1}
    assert header_values(headers, "Content-Type") == ["application/json"]
    assert header_values(headers, "Content-Length") == [str(len(body))]


def test_json_keeps_explicit_content_type():
    plan = plans.plan(requests=[{"name": "a", "method": "PUT", "json": [1, 2], "headers": {"Content-Type": "application/vnd.x+json"}}])
    _, headers, body = parse(encoded(plan))
    assert body == b"[1,2]"
    assert header_values(headers, "Content-Type") == ["application/vnd.x+json"]


def test_text_body_sets_length_in_bytes_not_characters():
    plan = plans.plan(requests=[{"name": "a", "method": "POST", "body": "héllo", "headers": {"Content-Type": "text/plain"}}])
    _, headers, body = parse(encoded(plan))
    assert body == "héllo".encode()
    assert header_values(headers, "Content-Length") == ["6"]
    assert header_values(headers, "Content-Type") == ["text/plain"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_empty_body_for_methods_with_bodies_sends_zero_length(method):
    _, headers, body = parse(encoded(plans.plan(requests=[{"name": "a", "method": method}])))
    assert header_values(headers, "Content-Length") == ["0"]
    assert body == b""


def test_delete_with_body_sends_length():
    _, headers, body = parse(encoded(plans.plan(requests=[{"name": "a", "method": "DELETE", "body": "xyz"}])))
    assert header_values(headers, "Content-Length") == ["3"]
    assert body == b"xyz"


def test_plan_headers_are_merged_and_request_headers_win():
    plan = plans.plan(requests=
        [{"name": "a", "headers": {"X-Trace": "req", "Accept": "text/html"}}, {"name": "b"}],
        headers={"Authorization": "Bearer t", "X-Trace": "plan"},
    )
    _, headers, _ = parse(encoded(plan, 0))
    assert header_values(headers, "Authorization") == ["Bearer t"]
    assert header_values(headers, "X-Trace") == ["req"]
    assert header_values(headers, "Accept") == ["text/html"]
    _, headers_b, _ = parse(encoded(plan, 1))
    assert header_values(headers_b, "X-Trace") == ["plan"]
    assert header_values(headers_b, "Accept") == []


def test_user_agent_and_host_can_be_overridden_with_same_case():
    plan = plans.plan(requests=[{"name": "a", "headers": {"User-Agent": "me", "Host": "shop.example"}}])
    _, headers, _ = parse(encoded(plan))
    assert header_values(headers, "User-Agent") == ["me"]
    assert header_values(headers, "Host") == ["shop.example"]


def test_lowercase_host_header_replaces_default_host():
    plan = plans.plan(requests=[{"name": "a"}], headers={"host": "shop.example"})
    _, headers, _ = parse(encoded(plan))
    assert header_values(headers, "Host") == ["shop.example"]


def test_lowercase_content_type_is_not_duplicated_for_json():
    plan = plans.plan(requests=[{"name": "a", "method": "POST", "json": {"k": 1}, "headers": {"content-type": "application/merge-patch+json"}}])
    _, headers, _ = parse(encoded(plan))
    assert header_values(headers, "Content-Type") == ["application/merge-patch+json"]


def test_request_header_overrides_plan_header_case_insensitively():
    plan = plans.plan(requests=[{"name": "a", "headers": {"x-token": "req"}}], headers={"X-Token": "plan"})
    _, headers, _ = parse(encoded(plan))
    assert header_values(headers, "X-Token") == ["req"]


@pytest.mark.parametrize(
    "request_spec",
    [{"name": "a", "path": "/caf\u20ac"}, {"name": "a", "headers": {"X-Name": "\u65e5\u672c"}}],
)
def test_a_plan_that_validates_can_be_encoded(request_spec):
    try:
        plan = plans.plan(requests=[request_spec])
    except loader.InvalidPlan:
        return  # refusing it at validation would also be correct
    payload = encoded(plan)
    assert payload.startswith(b"GET /")
