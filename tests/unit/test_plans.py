"""Reading and checking plans (services/plan/loader.py, services/common/fields.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.errors import InvalidPlan, TargetNotAllowed
from schemas.plan import Plan
from services.common.fields import field_of
from services.plan import loader
from tests import plans

ROOT = Path(__file__).resolve().parents[2]

BASE_YAML = """\
name: shop
target: http://127.0.0.1:8080
rate: 100
duration: 30s
requests:
  - {name: home, path: /}
"""


def field_error(obj) -> str | None:
    with pytest.raises(InvalidPlan) as info:
        loader.from_obj(obj)
    return info.value.field


# --- loading -------------------------------------------------------------------


def test_loads_yaml():
    plan = loader.loads(BASE_YAML)
    assert isinstance(plan, Plan)
    assert plan.name == "shop"
    assert plan.rate == 100.0
    assert plan.duration == 30.0
    assert plan.requests[0].method == "GET"
    assert plan.requests[0].weight == 1
    assert plan.timeout == 5.0
    assert plan.connections == 64


def test_loads_json_text_and_bytes():
    text = json.dumps(plans.raw(plans.SHOP, duration="2m", timeout="500ms"))
    plan = loader.loads(text)
    assert plan.duration == 120.0
    assert plan.timeout == 0.5
    assert loader.loads(text.encode()) == plan


def test_load_reads_the_example_plans():
    checkout = loader.load(str(ROOT / "plans" / "checkout.yaml"))
    assert checkout.rate == 500.0 and checkout.duration == 60.0
    assert [r.weight for r in checkout.requests] == [3, 1]
    demo = loader.load(str(ROOT / "plans" / "demo.yaml"))
    assert [s.duration for s in demo.stages] == [5.0, 15.0, 5.0, 5.0]
    assert demo.timeout == 2.0


def test_load_missing_file_is_invalid_plan(tmp_path):
    with pytest.raises(InvalidPlan, match="cannot read plan file"):
        loader.load(str(tmp_path / "nope.yaml"))


def test_loads_rejects_non_yaml_and_non_mapping():
    with pytest.raises(InvalidPlan, match="not YAML or JSON"):
        loader.loads("name: [unclosed")
    with pytest.raises(InvalidPlan, match="object/mapping"):
        loader.loads("[1, 2, 3]")
    with pytest.raises(InvalidPlan, match="object/mapping"):
        loader.loads("")


def test_loads_rejects_oversized_text():
    with pytest.raises(InvalidPlan, match="larger than"):
        loader.loads("#" * (loader.MAX_PLAN_BYTES + 1))


# --- durations -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90s", 90.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h1m1s", 3661.0),
        ("1.5s", 1.5),
        (" 1m 30s ", 90.0),
        ("45", 45.0),
        ("2.5", 2.5),
    ],
)
def test_parse_duration_strings(text, seconds):
    assert loader.parse_duration(text, "duration") == pytest.approx(seconds)


@pytest.mark.parametrize("value", [90, 1.5, None, True])
def test_parse_duration_passes_non_strings_through(value):
    assert loader.parse_duration(value, "duration") is value


@pytest.mark.parametrize("text", ["", "10x", "1m30", "s", "ms5", "1.5.5s", "5 minutes", "-"])
def test_parse_duration_rejects_and_names_field(text):
    with pytest.raises(InvalidPlan) as info:
        loader.parse_duration(text, "stages.2.duration")
    assert info.value.field == "stages.2.duration"


def test_numeric_durations_are_seconds():
    plan = loader.from_obj(plans.raw(plans.SHOP, duration=90, timeout=0.25))
    assert plan.duration == 90.0
    assert plan.timeout == 0.25


def test_stage_durations_are_parsed():
    plan = loader.from_obj(plans.raw(plans.SHOP, rate=None, duration=None, stages=[{"duration": "1m30s", "target": 5}, {"duration": 2, "target": 0}]))
    assert [s.duration for s in plan.stages] == [90.0, 2.0]


# --- errors name their field ----------------------------------------------------------


def test_bad_method_names_requests_index_method():
    assert field_error(plans.raw(plans.SHOP, requests=[{"name": "a"}, {"name": "b", "method": "FETCH"}])) == "requests.1.method"


def test_unknown_request_field_names_it():
    assert field_error(plans.raw(plans.SHOP, requests=[{"name": "a", "wieght": 3}])) == "requests.0.wieght"


def test_unknown_top_level_field_names_it():
    assert field_error(plans.raw(plans.SHOP, durtion=3)) == "durtion"


def test_missing_request_name_names_it():
    assert field_error(plans.raw(plans.SHOP, requests=[{"path": "/"}])) == "requests.0.name"


def test_missing_target_names_it():
    obj = plans.raw(plans.SHOP)
    del obj["target"]
    assert field_error(obj) == "target"


def test_bad_rate_names_rate():
    assert field_error(plans.raw(plans.SHOP, rate=-1)) == "rate"
    assert field_error(plans.raw(plans.SHOP, rate="fast")) == "rate"


def test_bad_duration_names_duration():
    assert field_error(plans.raw(plans.SHOP, duration="10x")) == "duration"
    assert field_error(plans.raw(plans.SHOP, duration="0s")) == "duration"
    assert field_error(plans.raw(plans.SHOP, duration="8d")) == "duration"  # above one week


def test_bad_stage_duration_names_stage_index():
    obj = plans.raw(plans.SHOP, rate=None, duration=None, stages=[{"duration": "5s", "target": 1}, {"duration": "1q", "target": 2}])
    assert field_error(obj) == "stages.1.duration"


def test_bad_stage_target_names_stage_index():
    obj = plans.raw(plans.SHOP, rate=None, duration=None, stages=[{"duration": "5s", "target": -1}])
    assert field_error(obj) == "stages.0.target"


def test_bad_check_status_names_nested_path():
    assert field_error(plans.raw(plans.SHOP, requests=[{"name": "a", "checks": {"status": 700}}])) == "requests.0.checks.status"


def test_unknown_threshold_names_it():
    assert field_error(plans.raw(plans.SHOP, thresholds={"p99": 3})) == "thresholds.p99"


def test_bad_target_scheme_names_target():
    assert field_error(plans.raw(plans.SHOP, target="ftp://example.com")) == "target"
    assert field_error(plans.raw(plans.SHOP, target="http://")) == "target"


def test_target_with_path_or_bad_port_names_target():
    assert field_error(plans.raw(plans.SHOP, target="http://example.com/api")) == "target"
    assert field_error(plans.raw(plans.SHOP, target="http://example.com?x=1")) == "target"
    assert field_error(plans.raw(plans.SHOP, target="http://example.com:99999")) == "target"
    assert loader.from_obj(plans.raw(plans.SHOP, target="http://example.com:8080/")).target == "http://example.com:8080/"


def test_rate_and_stages_both_given_is_invalid():
    obj = plans.raw(plans.SHOP, duration=None, stages=[{"duration": 5, "target": 1}])
    with pytest.raises(InvalidPlan, match="not both") as info:
        loader.from_obj(obj)
    assert info.value.field == "rate"


def test_neither_rate_nor_stages_is_invalid():
    assert field_error(plans.raw(plans.SHOP, rate=None)) == "rate"


def test_rate_without_duration_is_invalid():
    assert field_error(plans.raw(plans.SHOP, duration=None)) == "duration"


def test_stages_with_duration_is_invalid():
    obj = plans.raw(plans.SHOP, rate=None, stages=[{"duration": 5, "target": 1}])
    with pytest.raises(InvalidPlan, match="sum of the stages") as info:
        loader.from_obj(obj)
    assert info.value.field == "duration"


def test_stages_all_zero_is_invalid():
    obj = plans.raw(plans.SHOP, rate=None, duration=None, stages=[{"duration": 5, "target": 0}])
    assert field_error(obj) == "stages"
    ok = plans.raw(plans.SHOP, rate=None, duration=None, start_rate=10, stages=[{"duration": 5, "target": 0}])
    assert loader.from_obj(ok).start_rate == 10.0


def test_duplicate_request_names_point_at_the_second():
    obj = plans.raw(plans.SHOP, requests=[{"name": "a"}, {"name": "b"}, {"name": "a"}])
    with pytest.raises(InvalidPlan, match="used twice") as info:
        loader.from_obj(obj)
    assert info.value.field == "requests.2.name"


def test_all_zero_weights_is_invalid():
    assert field_error(plans.raw(plans.SHOP, requests=[{"name": "a", "weight": 0}, {"name": "b", "weight": 0}])) == "requests.0.weight"


def test_body_and_json_both_is_invalid():
    obj = plans.raw(plans.SHOP, requests=[{"name": "a"}, {"name": "b", "method": "POST", "body": "x", "json": {"k": 1}}])
    with pytest.raises(InvalidPlan, match="body or json") as info:
        loader.from_obj(obj)
    assert info.value.field == "requests.1.body"


@pytest.mark.parametrize(
    "headers",
    [{"Bad Name": "x"}, {"X-Ok": "a\r\nInjected: 1"}, {"X-Ok": "a\nb"}, {"": "x"}, {"X:Y": "1"}],
)
def test_bad_request_headers_are_invalid(headers):
    obj = plans.raw(plans.SHOP, requests=[{"name": "a"}, {"name": "b", "headers": headers}])
    (name,) = headers
    assert field_error(obj) == f"requests.1.headers.{name}"


def test_good_headers_are_kept():
    plan = loader.from_obj(plans.raw(plans.SHOP, headers={"Authorization": "Bearer x"}, requests=[{"name": "a", "headers": {"X-Trace-Id": "1"}}]))
    assert plan.headers == {"Authorization": "Bearer x"}
    assert plan.requests[0].headers == {"X-Trace-Id": "1"}


def test_bad_plan_level_header_is_invalid():
    with pytest.raises(InvalidPlan):
        loader.from_obj(plans.raw(plans.SHOP, headers={"X-Ok": "a\r\nb"}))


def test_bad_plan_level_header_is_named_under_headers():
    assert field_error(plans.raw(plans.SHOP, headers={"Bad Name": "x"})) == "headers.Bad Name"


@pytest.mark.parametrize("where", ["headers", "requests", "flows"])
def test_a_header_templated_from_vars_is_checked_as_it_will_be_sent(where):
    """Checked as a literal value is: a var that renders a header HTTP cannot carry
    (outside latin-1, a line break) is an invalid plan naming the header, not an
    encoding error when the generator starts the run."""
    header = {"X-Name": "{{who}} {{$uuid}}"}
    fields = {"headers": header} if where == "headers" else {}
    if where == "requests":
        fields["requests"] = [{"name": "a", "headers": header}]
    if where == "flows":
        fields.update(rate=None, requests=None, users=2, flows=[{"name": "f", "steps": [{"name": "s", "headers": header}]}])
    field = {"headers": "headers.X-Name", "requests": "requests.0.headers.X-Name",
             "flows": "flows.0.steps.0.headers.X-Name"}[where]
    for bad in ("J\u00fcrgen \u20ac", "a\r\nX-Injected: 1", "{{other}}"):
        obj = plans.raw(plans.SHOP, vars={"who": bad, "other": "\u20ac"}, **fields)
        assert field_error(obj) == field
    for good in ("J\u00fcrgen", "tok-{{$randstr(6)}}"):  # latin-1 as a literal value may be
        loader.from_obj(plans.raw(plans.SHOP, vars={"who": good}, **fields))


def test_non_string_header_value_names_headers_field():
    assert field_error(plans.raw(plans.SHOP, requests=[{"name": "a", "headers": {"X-N": 1}}])) == "requests.0.headers"


# --- field_of ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, field",
    [
        ("Expected `int` - at `$.requests[1].weight`", "requests.1.weight"),
        ("Expected `float` > 0.0 - at `$.rate`", "rate"),
        ("Object contains unknown field `wieght` - at `$.requests[0]`", "requests.0.wieght"),
        ("Object missing required field `name` - at `$.requests[3]`", "requests.3.name"),
        ("Object missing required field `target`", "target"),
        ("Object contains unknown field `durtion`", "durtion"),
        ("Expected `int` <= 599 - at `$.requests[0].checks.status[2]`", "requests.0.checks.status.2"),
        ("Expected `object`, got `array`", None),
        ("", None),
    ],
)
def test_field_of_turns_msgspec_paths_into_dotted_fields(message, field):
    assert field_of(message) == field


# --- target allowlist -------------------------------------------------------------


@pytest.mark.parametrize(
    "target, allow",
    [
        ("http://127.0.0.1:8080", ["127.0.0.0/8"]),
        ("http://10.1.2.3", ["192.168.0.0/16", "10.0.0.0/8"]),
        ("http://10.1.2.3", ["10.1.2.3"]),
        ("http://[::1]:8080", ["::1/128"]),
        ("http://api.example.com", ["api.example.com"]),
        ("http://API.Example.COM", ["api.example.com"]),
        ("http://api.example.com", ["*.example.com"]),
        ("http://shop-1.staging.local:80", ["shop-*.staging.local"]),
        ("http://anything.at.all", ["*"]),
        ("http://8.8.8.8", ["*"]),
    ],
)
def test_target_allowed(target, allow):
    assert loader.check_target_allowed(plans.plan(plans.SHOP, target), allow) is None


@pytest.mark.parametrize(
    "target, allow",
    [
        ("http://8.8.8.8", ["127.0.0.0/8", "10.0.0.0/8"]),
        ("http://a.b.example.com", ["*.example.com"]),  # * spans one label only
        ("http://example.com", ["*.example.com"]),
        ("http://evil-example.com", ["*.example.com"]),
        ("http://api.example.com.evil.io", ["api.example.com"]),
        ("http://localhost", ["127.0.0.0/8"]),  # names are not resolved
        ("http://127.0.0.1", []),
    ],
)
def test_target_not_allowed(target, allow):
    with pytest.raises(TargetNotAllowed) as info:
        loader.check_target_allowed(plans.plan(plans.SHOP, target), allow)
    assert info.value.field == "target"
    assert info.value.status == 403


# --- overrides --------------------------------------------------------------------


def test_override_rate_and_duration_of_rate_plan():
    plan = loader.from_obj(plans.raw(plans.SHOP))
    out = loader.with_overrides(plan, rate=50, duration=10)
    assert out.rate == 50.0 and out.duration == 10.0
    assert out.requests == plan.requests


def test_override_rate_of_stages_plan_keeps_total_duration():
    plan = loader.from_obj(plans.raw(plans.SHOP, rate=None, duration=None, start_rate=5, stages=[{"duration": 10, "target": 100}, {"duration": 20, "target": 0}]))
    out = loader.with_overrides(plan, rate=70)
    assert out.stages is None
    assert out.start_rate == 0.0
    assert out.rate == 70.0
    assert out.duration == 30.0


def test_override_duration_of_stages_plan_is_invalid():
    plan = loader.from_obj(plans.raw(plans.SHOP, rate=None, duration=None, stages=[{"duration": 10, "target": 100}]))
    with pytest.raises(InvalidPlan) as info:
        loader.with_overrides(plan, duration=5)
    assert info.value.field == "duration"


def test_override_generators_and_revalidate():
    plan = loader.from_obj(plans.raw(plans.SHOP))
    assert loader.with_overrides(plan, generators=3).generators == 3
    with pytest.raises(InvalidPlan) as info:
        loader.with_overrides(plan, generators=0)
    assert info.value.field == "generators"
    with pytest.raises(InvalidPlan) as info:
        loader.with_overrides(plan, rate=-5)
    assert info.value.field == "rate"


def test_no_overrides_gives_equal_plan():
    plan = loader.from_obj(plans.raw(plans.SHOP, headers={"A": "b"}, thresholds={"p99_ms": 100}))
    assert loader.with_overrides(plan) == plan


def test_abort_after_takes_a_duration_and_names_a_bad_one():
    plan = loader.from_obj(plans.raw(plans.SHOP, thresholds={"p99_ms": 100, "abort_on_fail": True, "abort_after": "1m30s"}))
    assert plan.thresholds.abort_on_fail and plan.thresholds.abort_after == 90.0
    assert loader.from_obj(plans.raw(plans.SHOP, thresholds={"abort_on_fail": True})).thresholds.abort_after == 10.0
    assert field_error(plans.raw(plans.SHOP, thresholds={"abort_after": "soon"})) == "thresholds.abort_after"
    assert field_error(plans.raw(plans.SHOP, thresholds={"abort_after": 0})) == "thresholds.abort_after"
