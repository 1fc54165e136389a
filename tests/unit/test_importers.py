"""Importers (services/plan/importers/): HAR, Postman, curl, JMeter → plans that validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.plan import importers
from services.plan.importers import common, curl, har, jmx, postman
from services.plan import loader

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def valid(imported: common.Imported, base: Path = SAMPLES):
    importers.declare_unset(imported, str(base))
    plan = common.finish(imported.plan, target=None, rate=None, users=None, duration=None)
    return loader.from_obj(loader.embed_data(plan, str(base)))


def steps(plan):
    return {s.name: s for f in plan.flows for s in f.steps}


def test_har_sample_maps_steps_thinks_checks_and_correlates_the_token():
    imp = har.convert((SAMPLES / "shop.har").read_text())
    plan = valid(imp)
    s = steps(plan)
    assert list(s) == ["GET /products", "POST /login", "GET /api/me", "GET /api/products",
                       "POST /api/cart", "GET /api/products/1"]
    assert plan.target == "http://127.0.0.1:8080"
    assert s["GET /products"].think == 2.0  # the pause before the login
    assert s["POST /login"].body == '{"username": "ann", "password": "secret"}'  # as recorded
    assert s["POST /login"].extract["token"].jsonpath == "$.token"
    assert s["GET /api/me"].headers["Authorization"] == "Bearer {{token}}"
    assert "Host" not in s["GET /api/me"].headers and ":authority" not in s["GET /api/me"].headers
    assert s["GET /api/me"].check.status == 200
    joined = "\n".join(imp.unmapped)
    assert "cdn.example.com" in joined and "'sid=s-1207' sent as recorded" in joined


def test_postman_sample_maps_variables_auth_scripts_and_lists_the_rest():
    imp = postman.convert((SAMPLES / "shop.postman_collection.json").read_text())
    plan = valid(imp)
    s = steps(plan)
    assert plan.name == "Shop API" and plan.vars == {}  # resolved into the requests, as newman does
    assert s["Auth/Login"].extract["token"].jsonpath == "$.token"
    assert s["Auth/Login"].check.status == 200
    assert s["Auth/Login"].body == '{\n  "username": "ann",\n  "password": "secret"\n}'
    assert s["Auth/Login"].headers == {"Content-Type": "application/json"}
    assert s["Me"].headers == {"Authorization": "Bearer {{token}}"}
    assert s["Me"].check.contains == "ann"
    assert "X-Debug" not in s["Products"].headers  # disabled in the collection
    assert s["Add to cart"].headers["X-Request-Id"] == "{{$uuid}}"
    joined = "\n".join(imp.unmapped)
    for expected in ("console.log", "$randomFirstName", "pre-request script", "avatar.png"):
        assert expected in joined


def test_curl_sample_and_single_commands():
    imp = curl.convert((SAMPLES / "shop.curl.txt").read_text())
    plan = valid(imp)
    s = steps(plan)
    assert list(s) == ["GET /products", "POST /login", "GET /api/products", "GET /item/search"]
    # the bytes curl sends, not a re-encoding of them
    assert s["POST /login"].body == '{"username":"bob","password":"secret"}'
    assert s["POST /login"].headers["Content-Type"] == "application/json"
    assert s["GET /item/search"].path == "/item/search?q=widget&page=2"
    assert s["GET /api/products"].headers["Cookie"] == "sid=s-9"  # -b sends it
    assert any("--limit-rate" in u for u in imp.unmapped)
    one = curl.convert("curl -k -u ann:pw -d 'a=1' -x proxy.local:3128 https://shop.test:8443/form")
    plan = valid(one)
    step = plan.flows[0].steps[0]
    assert plan.target == "https://shop.test:8443" and plan.insecure
    assert plan.proxy == "http://proxy.local:3128"
    assert step.method == "POST" and step.body == "a=1"
    assert step.headers["Authorization"] == "Basic YW5uOnB3"
    assert step.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_jmx_sample_maps_thread_group_samplers_extractors_assertions_and_data(tmp_path):
    imp = jmx.convert((SAMPLES / "shop.jmx").read_text(), base_dir=str(SAMPLES), out_dir=str(SAMPLES))
    plan = valid(imp)
    assert plan.name == "Shop checkout" and plan.target == "http://127.0.0.1:8080"
    assert [(st.duration, st.target) for st in plan.user_stages] == [(1, 3), (3, 3)]
    assert plan.headers == {"Accept": "application/json"}
    assert plan.vars == {"sku": "SKU-001"}
    assert plan.data[0].file == "users.csv" and plan.data[0].mode == "cycle"
    assert plan.data[0].rows[0] == {"username": "ann", "password": "secret"}
    s = steps(plan)
    assert list(s) == ["Login", "Me", "Products page", "Product", "Add to cart"]
    assert s["Login"].body == '{"username": "{{username}}", "password": "{{password}}"}'
    assert s["Login"].extract["token"].jsonpath == "$.token" and s["Login"].check.status == 200
    assert s["Me"].headers == {"Authorization": "Bearer {{token}}"}
    assert s["Me"].check.contains == '"ok": true' and s["Me"].check.max_ms == 1000
    assert s["Products page"].extract["product_url"].regex == 'href="(/api/products/\\d+)"'
    assert s["Product"].path == "{{product_url}}?ref={{$randint(1,100)}}"
    assert s["Add to cart"].body == '{"sku": "{{sku}}", "id": "{{$uuid}}"}'
    assert all(st.think == 0.1 for st in s.values())
    joined = "\n".join(imp.unmapped)
    assert "JSR223PostProcessor" in joined and "View Results Tree" in joined
    assert "never set" not in joined


def test_jmx_constant_throughput_timer_becomes_the_open_model_rate():
    text = (SAMPLES / "shop.jmx").read_text().replace(
        '<ConstantTimer guiclass="ConstantTimerGui"',
        '<ConstantThroughputTimer testname="tput" enabled="true"><intProp name="calcMode">1</intProp>'
        '<doubleProp><name>throughput</name><value>600.0</value><savedValue>0.0</savedValue></doubleProp>'
        '</ConstantThroughputTimer><hashTree/><ConstantTimer guiclass="ConstantTimerGui"')
    plan = valid(jmx.convert(text, base_dir=str(SAMPLES), out_dir=str(SAMPLES)))
    assert plan.rate == 10 and plan.duration == 4 and plan.model == "open"


@pytest.mark.parametrize("mod,text", [
    (har, "{}"), (har, "not json"), (postman, "[]"), (curl, "wget http://x"), (curl, ""),
    (jmx, "<x/>"), (jmx, "<<<"),
])
def test_unreadable_inputs_are_import_errors(mod, text):
    with pytest.raises(common.ImportError_):
        mod.convert(text)


def test_cli_import_writes_a_plan_that_validate_accepts(tmp_path, capsys):
    from services.cli.__main__ import main

    out = tmp_path / "p.yaml"
    with pytest.raises(SystemExit) as done:
        main(["import", "jmx", str(SAMPLES / "shop.jmx"), "-o", str(out), "--target",
              "http://127.0.0.1:9999", "--users", "2", "--duration", "5s"])
    assert done.value.code == 0
    text = out.read_text()
    assert text.startswith("# Imported by `surge import`") and "JSR223PostProcessor" in text
    plan = loader.load(str(out))
    assert plan.target == "http://127.0.0.1:9999" and plan.users == 2 and plan.duration == 5
    assert plan.data[0].rows  # the CSV path was rewritten relative to the output plan
    with pytest.raises(SystemExit) as done:
        main(["validate", str(out)])
    assert done.value.code == 0


def test_cli_import_says_everything_was_mapped_only_when_true(tmp_path, capsys):
    import json

    from services.cli.__main__ import main

    for command, everything in [("curl http://h:1/a -d x=1", True),
                                ("curl http://h:1/a --limit-rate 1k", False)]:
        with pytest.raises(SystemExit) as done:
            main(["import", "curl", command])
        assert done.value.code == 0
        err = capsys.readouterr().err
        assert ("everything in the source was mapped" in err) is everything
        assert ("not mapped" in err) is not everything
        with pytest.raises(SystemExit):
            main(["import", "curl", command, "--json"])
        out = json.loads(capsys.readouterr().out)
        assert out["everything_mapped"] is everything and (out["unmapped"] == []) is everything
    with pytest.raises(SystemExit) as done:
        main(["import", "curl", "wget http://h/", "--json"])
    assert done.value.code == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "import_failed"


@pytest.mark.parametrize("kind,text", [
    ("har", '{"log": {"entries": [{"request": {"url": "http://h/", "headers": "x"}}]}}'),
    ("har", '{"log": {"entries": [1]}}'),
    ("postman", '{"info": {}, "item": [{"request": {"url": {"host": 5, "path": {}}}}]}'),
    ("postman", '{"info": {}, "item": "x"}'),
    ("openapi", "openapi: 3.0.0\npaths: {/a: {get: {parameters: [1], responses: 3}}}\n"),
    ("openapi", "openapi: 3.0.0\nservers: x\npaths: {/a: {get: {}}}\n"),
])
def test_a_source_of_the_wrong_shape_is_an_import_error(kind, text):
    try:
        importers.convert_text(kind, text, base_dir=None)
    except common.ImportError_:
        pass  # refused with a message; converting what it could is fine too
