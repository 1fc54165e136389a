"""Pre-encoded HTTP/1.1 requests (generator/encode.py) and the target's address (generator/http.py)."""

from __future__ import annotations

import json

import pytest

from services.common.identity import USER_AGENT
from services.generator.encode import Rendered, encode_request, payloads
from services.generator.http import target_address, tls_context
from services.plan import loader
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
    assert target_address(plans.plan(requests=[{"name": "a"}], target="https://api.example.com")) == (
        "api.example.com", 443, "api.example.com"
    )


def test_tls_settings_are_the_flow_engines():
    import ssl

    assert tls_context(plans.plan(requests=[{"name": "a"}])) is None
    checked = tls_context(plans.plan(requests=[{"name": "a"}], target="https://h"))
    assert checked.verify_mode == ssl.CERT_REQUIRED and checked.check_hostname
    insecure = tls_context(plans.plan(requests=[{"name": "a"}], target="https://h", insecure=True))
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname


def test_get_has_request_line_host_and_user_agent_and_no_body():
    line, headers, body = parse(encoded(plans.plan(requests=[{"name": "a", "path": "/items?id=7"}])))
    assert line == "GET /items?id=7 HTTP/1.1"
    assert header_values(headers, "Host") == ["127.0.0.1:8080"]
    assert header_values(headers, "User-Agent") == [USER_AGENT]
    assert header_values(headers, "Content-Length") == []
    assert body == b""


def test_payload_is_exact_bytes():
    payload = encoded(plans.plan(requests=[{"name": "a", "path": "/x"}], target="http://h:81"))
    assert payload == (b"GET /x HTTP/1.1\r\nHost: h:81\r\nUser-Agent: surge/0.1\r\n"
                       b"Accept: */*\r\nAccept-Encoding: gzip, deflate, br\r\n\r\n")


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
    assert header_values(headers_b, "Accept") == ["*/*"]  # the default (encode.DEFAULT_HEADERS)


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


# --- templated requests on the fast engine (encode.payloads) -----------------------

def built(plan):
    return payloads(plan, target_address(plan)[2])


def test_a_static_plan_gets_plain_pre_encoded_bytes():
    plan = plans.plan(requests=[{"name": "a", "path": "/x"}, {"name": "b", "method": "POST", "body": "k"}])
    got = built(plan)
    assert type(got) is list and got == [encoded(plan, 0), encoded(plan, 1)]


def test_templates_of_vars_only_render_once_to_what_the_literal_plan_encodes():
    literal = {"path": "/u/42?q=a+b", "headers": {"Authorization": "Bearer tok"}, "method": "POST",
               "json": {"user": "42", "n": 7, "tok": ["tok"]}}
    templated = {"path": "/u/{{id}}?q={{q|urlencode}}", "headers": {"Authorization": "Bearer {{token}}"},
                 "method": "POST", "json": {"user": "{{id}}", "n": 7, "{{token}}": ["{{token}}"]}}
    variables = {"id": "42", "token": "tok", "q": "a b"}
    want = encoded(plans.plan(requests=[{"name": "a", **literal}],
                              headers={"X-Env": "stage"}))
    plan = plans.plan(requests=[{"name": "a", **templated}], headers={"X-Env": "{{env}}"},
                      vars={**variables, "env": "stage"})
    got = built(plan)
    # no generator: the bytes never change, so they are encoded once (a plain list)
    assert type(got) is list
    want_line, want_headers, want_body = parse(want)
    got_line, got_headers, got_body = parse(got[0])
    assert got_line == want_line and got_headers == want_headers
    assert json.loads(got_body) == {"user": "42", "n": 7, "tok": ["tok"]}


def test_generators_render_anew_at_every_send_in_every_place():
    plan = plans.plan(requests=[
        {"name": "a", "method": "POST", "path": "/o/{{$randint(1,1000000000)}}",
         "headers": {"X-Request-Id": "{{$uuid}}", "Authorization": "Bearer {{token}}"},
         "body": "id={{$uuid}}&t={{token}}"},
        {"name": "b", "method": "PUT", "json": {"id": "{{$uuid}}", "n": "{{$randint(5,5)}}"}},
        {"name": "c", "path": "/static"},
    ], headers={"X-Trace": "{{$randstr(12)}}"}, vars={"token": "t-1"})
    got = built(plan)
    assert isinstance(got, Rendered) and len(got) == 3
    # the plan's templated header is in every request: "c" renders too
    assert got[2] != got[2] and got[2].startswith(b"GET /static HTTP/1.1\r\n")
    seen = set()
    for _ in range(20):
        line, headers, body = parse(got[0])
        method, path, version = line.split(" ")
        assert method == "POST" and version == "HTTP/1.1" and path.startswith("/o/")
        assert header_values(headers, "Authorization") == ["Bearer t-1"]
        assert header_values(headers, "Host") == ["127.0.0.1:8080"]
        (rid,) = header_values(headers, "X-Request-Id")
        (trace,) = header_values(headers, "X-Trace")
        assert len(rid) == 36 and len(trace) == 12
        assert body.startswith(b"id=") and body.endswith(b"&t=t-1") and len(body) == 3 + 36 + 6
        assert header_values(headers, "Content-Length") == [str(len(body))]
        seen.add((path, rid, trace, body))
        _, headers_b, body_b = parse(got[1])
        doc = json.loads(body_b)
        assert doc["n"] == 5 and len(doc["id"]) == 36  # a lone reference keeps its type
        assert header_values(headers_b, "Content-Type") == ["application/json"]
        assert header_values(headers_b, "Content-Length") == [str(len(body_b))]
        seen.add(doc["id"])
    assert len(seen) == 40  # every send its own path, uuids, string, body


def test_in_a_templated_plan_untemplated_requests_keep_their_bytes():
    plan = plans.plan(requests=[{"name": "a", "path": "/{{$uuid}}"}, {"name": "b", "path": "/b"},
                                {"name": "c", "path": "/{{x}}"}], vars={"x": "c"})
    got = built(plan)
    assert isinstance(got, Rendered) and got.fixed[0] is None
    assert got[1] is got.fixed[1] and got[1] == encoded(plan, 1)
    assert got[2] is got.fixed[2] and got[2].startswith(b"GET /c HTTP/1.1\r\n")


def test_a_render_is_encoded_as_the_flow_engine_renders_it():
    from services.generator.session import Program

    plan = plans.plan(requests=[{"name": "a", "method": "PATCH", "path": "/p/{{k}}",
                                 "headers": {"content-type": "text/x", "X-K": "{{k}}"},
                                 "json": {"a": "{{k}}"}}],
                      headers={"X-Plan": "p", "x-k": "plan"}, vars={"k": "v"})
    program = Program(plan, __import__("random").Random(0))
    path, headers, body = program.flows[0][0].render("", program.headers, program.vars)
    assert path == "/p/v" and body == b'{"a":"v"}' and headers["X-K"] == "v"
    line, got_headers, got_body = parse(built(plan)[0])
    assert line == "PATCH /p/v HTTP/1.1" and got_body == body
    # the same names, case-insensitively: the request's own win, json keeps its Content-Type
    assert header_values(got_headers, "X-K") == ["v"]
    assert header_values(got_headers, "Content-Type") == ["text/x"]
    assert header_values(got_headers, "X-Plan") == ["p"]
