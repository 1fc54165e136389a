"""services/ui/inputs.py and auth.py: browser input checked, tokens and CSRF."""

from __future__ import annotations

import pytest

from schemas.errors import BadRequest, InvalidPlan
from services.ui import auth, inputs

PLAN = """name: x
target: http://127.0.0.1:8080
rate: 10
duration: 5s
requests:
  - name: a
  - name: b
    method: FETCH
"""


def test_line_of_finds_the_field_in_yaml() -> None:
    assert inputs.line_of(PLAN, "requests.1.method") == 8
    assert inputs.line_of(PLAN, "rate") == 3
    assert inputs.line_of(PLAN, "requests.1.nope") == 7  # deepest node found
    assert inputs.line_of("{not yaml", "rate") is None
    assert inputs.line_of(PLAN, None) is None


def test_plan_object_rejects_non_mappings_and_bad_yaml() -> None:
    assert inputs.plan_object(PLAN)["rate"] == 10
    with pytest.raises(InvalidPlan, match="mapping"):
        inputs.plan_object("- a\n- b\n")
    with pytest.raises(InvalidPlan, match="line"):
        inputs.plan_object("name: [unclosed\n")


def test_decode_names_the_bad_field() -> None:
    with pytest.raises(BadRequest) as err:
        inputs.decode(b'{"rate": "fast"}', inputs.RateBody)
    assert err.value.field == "rate"
    with pytest.raises(BadRequest):
        inputs.decode(b'{"rate": -1}', inputs.RateBody)
    with pytest.raises(BadRequest, match="JSON"):
        inputs.decode(b"{nope", inputs.RateBody)
    with pytest.raises(BadRequest):
        inputs.decode(b"", inputs.RateBody)
    assert inputs.decode(b'{"rate": 5}', inputs.RateBody).rate == 5


def test_run_ids_and_compare_queries_are_checked() -> None:
    assert inputs.run_id("20260101-abc") == "20260101-abc"
    for bad in ("", "../etc", "A", "x" * 65, "a b"):
        with pytest.raises(BadRequest):
            inputs.run_id(bad)
    assert inputs.compare_query("a,b").runs == ["a", "b"]
    for bad in ("a", "a,a", "a,B", ",".join(f"r{i}" for i in range(11))):
        with pytest.raises(BadRequest) as err:
            inputs.compare_query(bad)
        assert err.value.field == "runs"


def test_without_a_token_everyone_is_in() -> None:
    assert auth.authenticated("", {}, {})


def test_token_by_bearer_or_session_cookie() -> None:
    token = "t0k"
    assert not auth.authenticated(token, {}, {})
    assert auth.authenticated(token, {"Authorization": "Bearer t0k"}, {})
    assert not auth.authenticated(token, {"Authorization": "Bearer nope"}, {})
    assert not auth.authenticated(token, {"Authorization": "Basic t0k"}, {})
    cookie = auth.session_value(token)
    assert token not in cookie
    assert auth.authenticated(token, {}, {auth.SESSION_COOKIE: cookie})
    assert not auth.authenticated(token, {}, {auth.SESSION_COOKIE: auth.session_value("other")})


def test_csrf_double_submit_and_origin() -> None:
    assert auth.csrf_ok({auth.CSRF_HEADER: "abc"}, {auth.CSRF_COOKIE: "abc"})
    assert not auth.csrf_ok({auth.CSRF_HEADER: "abc"}, {auth.CSRF_COOKIE: "abd"})
    assert not auth.csrf_ok({}, {auth.CSRF_COOKIE: "abc"})
    assert auth.csrf_ok({"Authorization": "Bearer x"}, {})
    assert auth.same_origin(None, "127.0.0.1:8089")
    assert auth.same_origin("http://127.0.0.1:8089", "127.0.0.1:8089")
    assert not auth.same_origin("http://evil.example", "127.0.0.1:8089")
    assert not auth.same_origin("null", "127.0.0.1:8089")
