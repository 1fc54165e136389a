"""The plan format's scenario parts: loading, validation with field paths, routing."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import InvalidPlan
from schemas.plan import Think
from services.plan import profile
from services.plan import loader
from services.generator.flows import needs_users
from services.plan.profile import users_at
from tests import plans

ROOT = Path(__file__).resolve().parents[2]


def field_error(obj) -> str | None:
    with pytest.raises(InvalidPlan) as info:
        loader.from_obj(obj)
    return info.value.field


def test_a_full_flow_plan_validates_with_durations_normalised():
    plan = loader.from_obj(plans.raw(plans.LOGIN_FLOW))
    assert plan.model == "closed"
    steps = plan.flows[0].steps
    assert steps[0].think == Think(0.1, 1.0)
    assert steps[1].think == 0.25
    assert steps[1].check.jsonpath[0].path == "$.a"  # one mapping becomes a list
    assert plan.data[0].mode == "unique" and plan.data[0].rows == [{"user": "ann"}]
    assert needs_users(plan)


def test_closed_profile_carries_duration_at_rate_zero():
    plan = loader.from_obj(plans.raw(plans.LOGIN_FLOW, users=None, duration=None,
                                    user_stages=[{"duration": "2s", "target": 4}, {"duration": 3, "target": 4}]))
    prof = profile.from_plan(plan)
    assert profile.duration(prof) == 5 and profile.peak(prof) == 0
    assert users_at(plan, 1.0) == 2.0 and users_at(plan, 3.0) == 4.0 and users_at(plan, 5.0) == 0.0


@pytest.mark.parametrize("over,field", [
    ({"rate": 10}, "rate"),  # users and rate
    ({"duration": None}, "duration"),
    ({"requests": [{"name": "r", "path": "/"}]}, "flows"),
    ({"flows": []}, "requests"),
    ({"proxy": "socks://x"}, "proxy"),
    ({"data": {"file": "users.csv"}}, "data.0.file"),
    ({"data": {"rows": [{"user": "a"}], "mode": "sometimes"}}, "data.0.mode"),
])
def test_plan_level_errors_name_the_field(over, field):
    assert field_error(plans.raw(plans.LOGIN_FLOW, **over)) == field


def step_error(step: dict) -> str | None:
    return field_error(plans.raw(plans.LOGIN_FLOW, flows=[{"name": "f", "steps": [{"path": "/"}, step]}]))


@pytest.mark.parametrize("step,field", [
    ({"path": "/u/{{nobody}}"}, "flows.0.steps.1.path"),
    ({"path": "/", "headers": {"X": "{{nobody}}"}}, "flows.0.steps.1.headers.X"),
    ({"path": "/", "json": {"a": ["{{nobody}}"]}}, "flows.0.steps.1.json.a.0"),
    ({"path": "/{{$nope}}"}, "flows.0.steps.1.path"),
    ({"path": "/", "extract": {"t": {"jsonpath": "$..[?("}}}, "flows.0.steps.1.extract.t"),
    ({"path": "/", "extract": {"t": {"regex": "a", "css": "b"}}}, "flows.0.steps.1.extract.t"),
    ({"path": "/", "extract": {"t": {}}}, "flows.0.steps.1.extract.t"),
    ({"path": "/", "extract": {"bad-name": {"regex": "a"}}}, "flows.0.steps.1.extract"),
    ({"path": "/", "check": {"regex": "("}}, "flows.0.steps.1.check"),
    ({"path": "/", "check": {"body_min": 5, "body_max": 1}}, "flows.0.steps.1.check.body_min"),
    ({"path": "/", "check": {"nope": 1}}, "flows.0.steps.1.check.nope"),
    ({"path": "/", "think": "soon"}, "flows.0.steps.1.think"),
    ({"path": "/", "think": {"min": 2, "max": 1}}, "flows.0.steps.1.think.min"),
    ({"path": "/", "method": "BREW"}, "flows.0.steps.1.method"),
    ({"path": "no-slash"}, "flows.0.steps.1.path"),
    ({"path": "/", "body": "x", "json": {}}, "flows.0.steps.1.body"),
])
def test_step_errors_name_the_field(step, field):
    assert step_error(step) == field


def test_duplicate_flow_names_and_zero_weights():
    two = [{"name": "f", "steps": [{"path": "/"}]}, {"name": "f", "steps": [{"path": "/"}]}]
    assert field_error(plans.raw(plans.LOGIN_FLOW, flows=two)) == "flows.1.name"
    zero = [{"name": "f", "weight": 0, "steps": [{"path": "/"}]}]
    assert field_error(plans.raw(plans.LOGIN_FLOW, flows=zero)) == "flows.0.weight"


def test_load_embeds_csv_and_jsonl_rows_relative_to_the_plan(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "users.csv").write_text("user,password\nann,secret\nbob,secret\n")
    (tmp_path / "keys.jsonl").write_text('{"key": 1}\n\n{"key": 2}\n')
    raw = plans.raw(plans.LOGIN_FLOW, data=[{"file": "data/users.csv", "mode": "unique"}, {"file": "keys.jsonl"}])
    import yaml

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    plan = loader.load(str(tmp_path / "p.yaml"))
    assert plan.data[0].rows == [{"user": "ann", "password": "secret"}, {"user": "bob", "password": "secret"}]
    assert plan.data[1].rows == [{"key": 1}, {"key": 2}]
    # what travels to the coordinator validates there without the file
    assert loader.from_obj(__import__("msgspec").to_builtins(plan)) == plan


def test_load_reports_bad_data_files_on_their_field(tmp_path):
    import yaml

    (tmp_path / "bad.csv").write_text("a,b\n1\n")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plans.raw(plans.LOGIN_FLOW, data={"file": "bad.csv"})))
    with pytest.raises(InvalidPlan) as info:
        loader.load(str(tmp_path / "p.yaml"))
    assert info.value.field == "data.0.file"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plans.raw(plans.LOGIN_FLOW, data={"file": "missing.csv"})))
    with pytest.raises(InvalidPlan, match="cannot read"):
        loader.load(str(tmp_path / "p.yaml"))


def test_static_plans_keep_the_fast_path():
    for path in ("plans/checkout.yaml", "plans/demo.yaml"):
        plan = loader.load(str(ROOT / path))
        assert plan.model == "open" and not needs_users(plan), path


def test_static_requests_needing_http2_or_user_state_run_virtual_users():
    base = {"name": "s", "rate": 1, "duration": 1, "requests": [{"name": "r", "path": "/"}]}
    assert needs_users(loader.from_obj({**base, "target": "https://127.0.0.1:8443"}))
    # HTTP/1.1 said outright: the fast engine speaks TLS itself (no ALPN probe needed)
    assert not needs_users(loader.from_obj({**base, "target": "https://127.0.0.1:8443",
                                                  "http2": "off", "insecure": True}))
    per_user = {**base, "target": "http://127.0.0.1:1",
                "requests": [{"name": "r", "path": "/x/{{__iteration}}"}]}
    assert needs_users(loader.from_obj(per_user))
    assert needs_users(loader.from_obj({**per_user, "vars": {"who": "u"},
                                              "requests": [{"name": "r", "path": "/{{who}}/{{__user}}"}]}))


def test_templates_of_vars_and_generators_keep_the_fast_engine():
    base = {"name": "s", "target": "http://127.0.0.1:1", "rate": 1, "duration": 1,
            "vars": {"token": "t-{{$randstr(8)}}"}}
    for request in ({"name": "r", "path": "/x/{{$randint(1,9)}}"},
                    {"name": "r", "headers": {"Authorization": "Bearer {{token}}"}},
                    {"name": "r", "method": "POST", "body": "id={{$uuid}}&q={{token | urlencode}}"},
                    {"name": "r", "method": "POST", "json": {"{{token}}": [{"at": "{{$timestamp_ms}}"}]}}):
        assert not needs_users(loader.from_obj({**base, "requests": [request]})), request
    assert not needs_users(loader.from_obj({**base, "headers": {"X-Id": "{{$uuid}}"},
                                                  "requests": [{"name": "r"}]}))


def test_every_example_plan_validates():
    found = sorted((ROOT / "plans").rglob("*.yaml"))
    assert found
    for path in found:
        loader.load(str(path))


def test_rate_override_turns_a_closed_plan_open():
    plan = loader.with_overrides(loader.from_obj(plans.raw(plans.LOGIN_FLOW)), rate=5)
    assert plan.model == "open" and plan.rate == 5 and plan.duration == 10


def test_per_request_thresholds_name_what_the_run_reports():
    # flow steps report under their name, else <flow>.<n>; setup steps under setup.<n>
    plan = loader.from_obj(plans.raw(plans.LOGIN_FLOW, thresholds={"requests": {"login": {"p99_ms": 100}, "f.2": {"error_rate": 0.1}}}))
    assert plan.thresholds.requests["login"].p99_ms == 100
    assert field_error(plans.raw(plans.LOGIN_FLOW, thresholds={"requests": {"f.3": {"p99_ms": 1}}})) == "thresholds.requests.f.3"
    with pytest.raises(InvalidPlan) as info:
        loader.from_obj(plans.raw(plans.LOGIN_FLOW, thresholds={"requests": {"logon": {"p99_ms": 1}}}))
    assert "'login', 'f.1', 'f.2'" in str(info.value)
    # a typo in a limit's name is named too (msgspec does not say under which key)
    assert field_error(plans.raw(plans.LOGIN_FLOW, thresholds={"requests": {"login": {"p99": 1}}})) == "thresholds.requests.p99"


def test_per_request_thresholds_of_a_static_plan():
    static = {"name": "s", "target": "http://127.0.0.1:8080", "rate": 10, "duration": "5s",
              "requests": [{"name": "home"}, {"name": "order", "method": "POST"}]}
    assert loader.from_obj({**static, "thresholds": {"requests": {"order": {"p95_ms": 50}}}})
    assert field_error({**static, "thresholds": {"requests": {"cart": {"p95_ms": 50}}}}) == "thresholds.requests.cart"
