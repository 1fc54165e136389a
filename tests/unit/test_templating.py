"""{{var}} templates (services/plan/templating.py)."""

from __future__ import annotations

import random
import re
import time

import pytest

from services.plan.templating import (
    JsonTemplate, MissingVariable, Template, TemplateError, references, references_in,
)


def test_static_text_renders_as_is():
    t = Template("/api/products?page=2")
    assert t.static and t.render({}) == "/api/products?page=2"


def test_variables_are_substituted_with_spaces_allowed():
    t = Template("/users/{{ id }}/orders/{{order}}")
    assert t.render({"id": 7, "order": "A-1"}) == "/users/7/orders/A-1"


def test_missing_variable_raises_naming_it():
    with pytest.raises(MissingVariable, match="token"):
        Template("Bearer {{token}}").render({})


def test_single_reference_keeps_its_type_in_json():
    body = JsonTemplate({"qty": "{{n}}", "note": "n={{n}}", "ok": True, "list": ["{{n}}"]})
    assert body.render({"n": 3}) == {"qty": 3, "note": "n=3", "ok": True, "list": [3]}


def test_static_json_is_returned_unchanged():
    body = JsonTemplate({"sku": "A1"})
    assert body.static and body.render({}) == {"sku": "A1"}


def test_generators():
    rng = random.Random(1)
    uuid = Template("{{$uuid}}", rng).render({})
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", uuid)
    ints = {int(Template("{{$randint(1, 3)}}", rng).render({})) for _ in range(200)}
    assert ints == {1, 2, 3}
    ts = int(Template("{{$timestamp}}").render({}))
    assert abs(ts - time.time()) < 5
    assert len(Template("{{$randstr(12)}}").render({})) == 12
    assert Template("{{$randint(5,5)}}").value({}) == 5  # a single reference keeps int


def test_seeded_generators_repeat():
    a = Template("{{$uuid}}-{{$randint(1,1000000)}}", random.Random(7)).render({})
    b = Template("{{$uuid}}-{{$randint(1,1000000)}}", random.Random(7)).render({})
    assert a == b


@pytest.mark.parametrize("text", ["{{$nope}}", "{{$randint(3,1)}}", "{{$randint(a,b)}}", "{{a b}}", "{{1x}}"])
def test_bad_references_are_template_errors(text):
    with pytest.raises(TemplateError):
        Template(text)
    with pytest.raises(TemplateError):
        references(text)


def test_references_lists_variables_not_generators():
    assert references("/{{a}}/{{$uuid}}/{{b}}") == ["a", "b"]
    assert sorted(references_in({"x": ["{{c}}", {"{{k}}": "{{d}}"}], "n": 1})) == ["c", "d", "k"]


def test_urlencode_filter_encodes_a_variable_as_a_form_field():
    from services.plan.templating import Template, references

    t = Template("user={{ user | urlencode }}&n={{n|urlencode}}&raw={{user}}")
    assert t.render({"user": "a b;c~*&é", "n": 5}) == "user=a+b%3Bc%7E*%26%C3%A9&n=5&raw=a b;c~*&é"
    assert references("{{user | urlencode}}") == ["user"]
    with pytest.raises(TemplateError, match="unknown filter"):
        Template("{{user | upper}}")


def test_uuid_text_is_the_uuid_modules():
    import uuid

    from services.plan.templating import uuid4_text

    rng = random.Random(3)
    for bits in [0, (1 << 128) - 1] + [rng.getrandbits(128) for _ in range(2000)]:
        assert uuid4_text(bits) == str(uuid.UUID(int=bits, version=4))


def test_splice_renders_what_its_pieces_render():
    from services.plan.templating import Splice

    s = Splice(["GET ", Template("/u/{{id}}"), " HTTP/1.1\r\n", "A: ", Template("Bearer {{t}}"), "\r\n",
                lambda v: f"X: {v['id'] * 2}\r\n", ""])
    assert s.render({"id": 7, "t": "tk"}) == "GET /u/7 HTTP/1.1\r\nA: Bearer tk\r\nX: 14\r\n"
    assert len(s.parts) == 6  # literals merged once: 3 literals, 2 references, 1 callable
    assert Splice(["a", Template("b"), "c"]).render({}) == "abc"
    with pytest.raises(MissingVariable, match="t"):
        s.render({"id": 1})


@pytest.mark.parametrize("body", [
    {"sku": "{{$uuid}}", "qty": 1, "user": "{{__user}}"},
    {"a": ["{{x}}", 2.5, {"n": "n={{x}}", "t": True, "z": None}], "b": {"c": "plain", "d": "{{obj}}"}},
    ["{{$randint(1,9)}}", "{{$randstr(4)}}", {"k": "{{x | urlencode}}"}, "é{{x}}"],
    "{{obj}}",
    {"{{x}}": 1, "same": "{{x}}"},  # a templated key: the whole tree is rendered then encoded
    {"static": [1, 2, {"x": "y"}]},
])
def test_json_encoder_gives_the_bytes_of_encoding_the_rendered_body(body):
    import msgspec

    v = {"x": "a b&c", "__user": 7, "obj": {"k": [1, "two"], "n": 1.5}}
    by_render, by_encoder = JsonTemplate(body, random.Random(9)), JsonTemplate(body, random.Random(9))
    encode = by_encoder.encoder()
    for _ in range(5):  # the generators are drawn in the same order
        assert encode(v) == msgspec.json.encode(by_render.render(v))


def test_a_var_built_from_other_vars_gets_their_values_not_their_text():
    """``vars`` render once per engine; one that names another var gets that var's
    rendered value, whatever their order (Postman and k6 resolve variables the same way):
    a chain through a generator sends the generator's value, never ``{{$uuid}}``."""
    from services.generator.session import Program
    from tests import plans

    plan = plans.plan(plans.ENGINE, "http://127.0.0.1:1",
                      vars={"c": "{{b}}!", "a": "{{$uuid}}", "b": "{{a}}-y", "host": "h"})
    got = Program(plan, random.Random(1)).vars
    assert "{{" not in got["b"] + got["c"], got
    assert got["b"] == got["a"] + "-y" and got["c"] == got["b"] + "!" and got["host"] == "h"


@pytest.mark.parametrize("variables, field", [({"a": "{{a}}"}, "vars.a"),
                                              ({"a": "x{{b}}", "b": "{{a}}y"}, "vars.a")])
def test_vars_that_refer_to_themselves_are_an_invalid_plan(variables, field):
    from schemas.errors import InvalidPlan
    from tests import plans

    with pytest.raises(InvalidPlan) as info:
        plans.plan(plans.ENGINE, "http://127.0.0.1:1", vars=variables)
    assert info.value.field == field and "refers to itself" in str(info.value)


@pytest.mark.parametrize("ref", ["col", "__user", "token"])
def test_a_var_naming_what_a_user_holds_is_an_invalid_plan(ref):
    """vars render once per engine, before any user: one that names a data column, a
    built-in per-user name or an extracted value is refused when the plan is read, not
    a MissingVariable when the generator starts the run."""
    from schemas.errors import InvalidPlan
    from tests import plans

    with pytest.raises(InvalidPlan) as info:
        plans.plan(plans.ENGINE, "http://127.0.0.1:1", vars={"a": f"u-{{{{{ref}}}}}"},
                   data=[{"rows": [{"col": "1"}]}], requests=None, rate=1,
                   flows=[{"name": "f", "steps": [{"name": "s", "headers": {"X": "{{a}}"},
                                                   "extract": {"token": {"header": "T"}}}]}])
    assert info.value.field == "vars.a" and f"{{{{{ref}}}}}" in str(info.value)
