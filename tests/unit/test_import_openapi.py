"""OpenAPI 3.x → plan: one request per operation, examples or schema-made values."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.plan import importers, loader
from services.plan.importers import common, openapi

SPEC = Path(__file__).resolve().parents[1] / "samples" / "shop.openapi.yaml"


def test_every_operation_becomes_a_step_in_its_tags_flow():
    imp = openapi.convert(SPEC.read_text())
    importers.build(imp, out_dir=".")
    plan = loader.from_obj(imp.plan)
    assert plan.target == "http://127.0.0.1:8080" and plan.name == "Shop API"
    flows = {f.name: {s.name: s for s in f.steps} for f in plan.flows}
    assert list(flows) == ["catalog", "cart", "default"]
    cat, cart, rest = flows["catalog"], flows["cart"], flows["default"]
    assert list(cat) == ["listProducts", "GET /products/:id", "POST /categories"]
    lp = cat["listProducts"]
    assert lp.path == "/v1/products?q=red%20shoe&page=2"  # required or given an example
    assert lp.headers == {"X-Api-Key": "{{apiKey}}"} and lp.check.status == 200
    assert cat["GET /products/:id"].path == "/v1/products/1"
    # a recursive schema is cut, not followed for ever
    assert cat["POST /categories"].json["name"] == "string"
    assert cat["POST /categories"].check.status == 201
    add = cart["addToCart"]
    assert add.json == {"sku": "SKU-001", "qty": 1, "note": "str"}
    assert add.headers == {"Authorization": "Bearer {{bearer}}"} and add.check.status == 200
    login = rest["POST /login"]
    assert login.body == "user=ann%20b&pass=s%261" and "X-Api-Key" not in login.headers
    assert login.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert rest["GET /health"].check is None
    joined = "\n".join(imp.unmapped)
    assert "servers[1:] (https://shop.example.com/v1) not used" in joined
    assert "/health: trace operations are not mapped" in joined
    assert "POST /cart: request body sent as application/json" in joined
    assert "credential {{apiKey}}" in joined and "credential {{bearer}}" in joined


def test_external_refs_are_listed_never_fetched():
    spec = ("openapi: 3.1.0\ninfo: {title: t, version: '1'}\nservers: [{url: 'http://h'}]\npaths:\n"
            "  /a:\n    post:\n      requestBody: {content: {application/json: {schema: "
            "{$ref: 'https://example.com/s.json#/X'}}}}\n      responses: {'200': {description: ok}}\n")
    imp = openapi.convert(spec)
    assert imp.plan["flows"][0]["steps"][0]["json"] is None
    assert any("https://example.com/s.json#/X" in u and "not fetched" in u for u in imp.unmapped)


@pytest.mark.parametrize("text,match", [
    ("swagger: '2.0'\npaths: {}\n", "Swagger 2.0"),
    ("openapi: 3.0.0\ninfo: {}\n", "not an OpenAPI"),
    ("openapi: 3.0.0\npaths: {}\n", "no operations"),
    (": : :", "not YAML"),
])
def test_unreadable_specs_are_import_errors(text, match):
    with pytest.raises(common.ImportError_, match=match):
        openapi.convert(text)


@pytest.mark.parametrize("schema,value", [
    ({"type": "string", "format": "uuid"}, "3fa85f64-5717-4562-b3fc-2c963f66afa6"),
    ({"type": "integer", "minimum": 5}, 5),
    ({"type": "number", "exclusiveMinimum": 0}, 1.0),
    ({"type": "array", "items": {"type": "boolean"}, "minItems": 2}, [True, True]),
    ({"type": ["null", "string"], "enum": ["a", "b"]}, "a"),
    ({"allOf": [{"properties": {"a": {"type": "integer"}}}, {"properties": {"b": {"const": "x"}}}]},
     {"a": 0, "b": "x"}),
    ({"oneOf": [{"type": "string", "minLength": 8}, {"type": "integer"}]}, "stringxx"),
])
def test_schema_examples(schema, value):
    assert openapi.example(schema) == value
