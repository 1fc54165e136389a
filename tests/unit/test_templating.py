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
