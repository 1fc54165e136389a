"""Imports checked against the tools they come from, on a server that records every request.

The source tool itself (the real curl; newman; Chromium) sends its requests to a
recording server on 127.0.0.1; then ``surge import`` turns the same source into a plan
and ``surge run`` sends it through a real stack (nats-server, coordinator, one
generator). The two recordings must be identical: method, target (path and query),
body bytes, and the headers that carry meaning (content type, auth, cookies, accept).

The stack is started once for the module; each comparison is one short run (one
arrival, every step once).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from services.common.client import CoordinatorClient
from tests.conftest import Cluster, generators_registered, start_cluster
from tests.recording import RecordingServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Cluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("oracle-stack"))
    try:
        cluster.coordinator()
        cluster.generator()

        async def ready() -> None:
            api = await CoordinatorClient.connect(cluster.url)
            try:
                await generators_registered(api, 1)
            finally:
                await api.close()

        asyncio.run(ready())
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as srv:
        yield srv


def run_imported(stack: Cluster, tmp: Path, kind: str, source: str, *extra: str,
                 rate: float = 0.25, duration: str = "4s") -> dict:
    """``surge import`` then ``surge run`` (by default one arrival: every step once); the
    import's JSON."""
    plan_path = tmp / f"{kind}.plan.yaml"
    done = stack.cli("import", kind, source, "-o", str(plan_path), "--json", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    plan = yaml.safe_load(plan_path.read_text())
    for key in ("users", "user_stages", "stages", "duration"):
        plan.pop(key, None)
    # rate 0.25 for 4 s: one arrival, at 0 s; the flow runs once, with 4 s to finish its steps
    # (a step due after the run's end is not sent) on a loaded machine
    plan.update(rate=rate, duration=duration)
    if len(plan["flows"]) > 1:  # one arrival runs one flow: every step in one, in order
        plan["flows"] = [{"name": "all", "steps": [s for f in plan["flows"] for s in f["steps"]]}]
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False))
    done = stack.cli("run", str(plan_path), "--quiet", "--timeout", "30",
                     "--report", str(tmp / f"{kind}.report.json"))
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return result


def keys(requests, headers=("content-type", "authorization", "cookie", "accept")) -> list[tuple]:
    return [r.key(headers) for r in requests]


CURL = r"""
curl -s URL/a --data-urlencode 'param=mp+8/ay70X' --data-urlencode 'q=a b&c'
curl -s URL/b --data-urlencode '=a b=c' --data-urlencode 'x y' --data-urlencode @f.txt --data-urlencode n@f.txt
curl -s URL/c -d @f.txt -d 'z=1' -d 'ü=%41'
curl -s URL/d --data-binary @f.txt
curl -s URL/e --data-raw '@f.txt'
curl -s -G 'URL/f?x=1' -d a=1 --data-urlencode 'b=c d'
curl -s URL/g --json '{"a": 1}' --json ' {"b":2}'
curl -s URL/h -F a=1 -F f=@h.txt -F 'g=<h.txt' -F 'k=@h.txt;type=text/x-foo;filename=zz.bin' -F 'j=@data.json'
curl -s URL/i -b 'a=1; b=2' -H 'X-A: 1' -H 'X-Request-Id: r-1' -u 'ann:p@ss:w' -X PUT -d q
curl -sSL --compressed -k 'URL/redirect?to=/j'
curl 'URL/k' \
  -H 'Accept: application/json' \
  -H $'Content-Type: application/json' \
  --data-raw $'{"note":"it\'s\\nfine","n":1}'
curl -XDELETE "URL/l?id=7" -H "Authorization: Bearer t0k\"en"
curl -I URL/m
curl -s 'URL/n?k=1' --url-query 'a=b c&d' --url-query '+x=y%20z' --url-query @f.txt
"""


def test_curl_plan_sends_what_curl_sends(stack: Cluster, server: RecordingServer, tmp_path):
    (tmp_path / "f.txt").write_bytes(b"line1\r\nline2 a+b&c\n")
    (tmp_path / "h.txt").write_bytes(b"hello\n")
    (tmp_path / "data.json").write_bytes(b'{"k": "v"}')
    commands = CURL.replace("URL", server.url)
    script = tmp_path / "commands.sh"
    script.write_text(commands)
    subprocess.run(["bash", str(script)], cwd=tmp_path, check=True, capture_output=True, timeout=30)
    by_curl = server.recorder.take()
    assert len(by_curl) == 15  # 14 commands, one of them redirected

    result = run_imported(stack, tmp_path, "curl", str(script))
    by_plan = server.recorder.wait_for(len(by_curl))[: len(by_curl)]
    assert keys(by_plan[:-1]) == keys(by_curl[:-1])
    # --url-query: curl's URL API writes escapes in lowercase hex (%0d), the engine's URL
    # library (yarl) in uppercase; the same URL (RFC 3986, 6.2.2.1), the rest byte for byte
    upper = re.sub(r"%[0-9a-f]{2}", lambda m: m.group(0).upper(), by_curl[-1].target)
    assert (by_plan[-1].target, by_plan[-1].key()[2:]) == (upper, by_curl[-1].key()[2:])
    assert [r.header("x-request-id") for r in by_plan] == [r.header("x-request-id") for r in by_curl]
    assert result["unmapped"] == [] and result["everything_mapped"]


PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head>
<body><form id="f" method="post" action="/redirect?to=/done">
<input name="user" value="ann b"><input name="note" value="mp+8/ay70X ~*&amp;= é">
<button id="go" type="submit">go</button></form>
<form id="u" method="post" action="/upload" enctype="multipart/form-data">
<input name="title" value="a &quot;b&quot;"><input type="file" id="doc" name="doc">
<button id="up" type="submit">up</button></form></body></html>"""


def test_har_recorded_by_chromium_replays_what_chromium_sent(stack: Cluster, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.ui_helpers import ARGS, CHROMIUM

    doc = tmp_path / "notes.txt"
    doc.write_bytes(b"line 1\nline \xc3\xa9 2\n")
    with RecordingServer(pages={"/page.html": PAGE}) as server:
        har_path = tmp_path / "session.har"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            context = browser.new_context(record_har_path=str(har_path))
            page = context.new_page()
            page.goto(f"{server.url}/cookie?sid=s-1")  # a cookie the later requests carry
            page.goto(f"{server.url}/page.html")
            page.evaluate("""() => fetch('/api/items?x=1', {method: 'POST',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify({a: 1, b: 'x y'})})
                .then(r => r.json())""")
            with page.expect_navigation(url="**/done"):
                page.click("#go")  # a urlencoded form POST, answered by a 302 the browser follows
            page.goto(f"{server.url}/page.html")
            page.set_input_files("#doc", str(doc))
            with page.expect_navigation(url="**/upload"):
                page.click("#up")  # a multipart form with a file
            context.close()  # writes the HAR
            browser.close()
        by_browser = [r for r in server.recorder.take() if r.target != "/favicon.ico"]
        assert [(r.method, r.target) for r in by_browser] == [
            ("GET", "/cookie?sid=s-1"), ("GET", "/page.html"), ("POST", "/api/items?x=1"),
            ("POST", "/redirect?to=/done"), ("GET", "/done"), ("GET", "/page.html"), ("POST", "/upload")]
        headers = ("content-type", "cookie", "accept")

        def same(by_plan) -> None:  # the redirect's GET included: no Content-Type left on it
            assert keys(by_plan, headers) == keys(by_browser[:6], headers)

        # the upload's body is not in the HAR (Chromium leaves file uploads out): listed, not sent
        result = run_imported(stack, tmp_path, "har", str(har_path))
        same(server.recorder.wait_for(len(by_browser) - 1)[: len(by_browser) - 1])
        assert len(result["unmapped"]) == 1 and "/upload): the HAR does not hold this request's body" in \
            result["unmapped"][0]

        # the same HAR with the form recorded only as params (as some tools save it)
        doc = json.loads(har_path.read_text())
        for e in doc["log"]["entries"]:
            post = e["request"].get("postData")
            if post and "urlencoded" in post.get("mimeType", ""):
                assert post.pop("text") and post["params"]
        (tmp_path / "params.har").write_text(json.dumps(doc))
        server.recorder.take()
        run_imported(stack, tmp_path, "har", str(tmp_path / "params.har"))
        same(server.recorder.wait_for(len(by_browser) - 1)[: len(by_browser) - 1])


NEWMAN = Path(__file__).resolve().parents[1] / "node_modules" / ".bin" / "newman"
COLLECTION = Path(__file__).resolve().parents[1] / "samples" / "oracle" / "courses.postman_collection.json"


@pytest.mark.skipif(not NEWMAN.exists(), reason="newman is installed by `make test` (tests/package.json)")
def test_postman_plan_sends_what_newman_sends(stack: Cluster, server: RecordingServer, tmp_path):
    """Collection, folder and environment variables, nested variables, path variables,
    query, raw/JSON, urlencoded and form-data bodies, basic/bearer/API-key auth inherited
    from folder and collection, ``noauth``; a pre-request script is listed."""
    (tmp_path / "h.txt").write_bytes(b"hello\n")
    coll = tmp_path / "courses.postman_collection.json"
    coll.write_text(COLLECTION.read_text())
    env = tmp_path / "local.postman_environment.json"
    env.write_text(json.dumps({"name": "local", "values": [
        {"key": "host", "value": server.url.split("://", 1)[1], "enabled": True},
        {"key": "token", "value": "env-token", "enabled": True}]}))
    done = subprocess.run([str(NEWMAN), "run", str(coll), "-e", str(env), "--working-dir", str(tmp_path),
                           "--reporters", "cli"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    by_newman = server.recorder.take()
    assert len(by_newman) == 10

    result = run_imported(stack, tmp_path, "postman", str(coll), "--environment", str(env))
    by_plan = server.recorder.wait_for(len(by_newman))[: len(by_newman)]
    headers = ("content-type", "authorization", "x-api-key", "accept", "x-request-id")
    assert keys(by_plan, headers) == keys(by_newman, headers)
    assert result["unmapped"] == ["request 'scripted': pre-request script not run"]


def test_openapi_plan_sends_one_request_per_operation(stack: Cluster, server: RecordingServer, tmp_path):
    spec = Path(__file__).resolve().parents[1] / "samples" / "shop.openapi.yaml"
    result = run_imported(stack, tmp_path, "openapi", str(spec), "--target", server.url)
    got = server.recorder.wait_for(6)[:6]
    assert [(r.method, r.target) for r in got] == [
        ("GET", "/v1/products?q=red%20shoe&page=2"), ("GET", "/v1/products/1"),
        ("POST", "/v1/categories"), ("POST", "/v1/cart"), ("POST", "/v1/login"), ("GET", "/v1/health")]
    assert json.loads(got[3].body) == {"sku": "SKU-001", "qty": 1, "note": "str"}
    assert got[3].header("content-type") == "application/json"
    assert got[4].body == b"user=ann%20b&pass=s%261"
    assert got[0].header("x-api-key") == "" and got[3].header("authorization") == "Bearer "
    assert "credential {{apiKey}} (security scheme) is empty in vars: set it" in result["unmapped"]


JMX_PLAN = """<?xml version="1.0" encoding="UTF-8"?>
<jmeterTestPlan version="1.2"><hashTree>
<TestPlan testname="Logins" enabled="true"/><hashTree>
<ConfigTestElement guiclass="HttpDefaultsGui" testclass="ConfigTestElement" testname="Defaults" enabled="true">
  <stringProp name="HTTPSampler.domain">${__P(host,127.0.0.1)}</stringProp>
  <stringProp name="HTTPSampler.port">${__P(port,1)}</stringProp></ConfigTestElement><hashTree/>
<HeaderManager testname="Headers" enabled="true"><collectionProp name="HeaderManager.headers">
  <elementProp name="" elementType="Header"><stringProp name="Header.name">X-Run</stringProp>
  <stringProp name="Header.value">${__P(run,r-1)}</stringProp></elementProp></collectionProp></HeaderManager><hashTree/>
<ThreadGroup testname="Users" enabled="true">
  <stringProp name="ThreadGroup.num_threads">2</stringProp><stringProp name="ThreadGroup.ramp_time">0</stringProp>
</ThreadGroup><hashTree>
  <CSVDataSet testname="Users CSV" enabled="true">
    <stringProp name="filename">users.csv</stringProp><stringProp name="variableNames">user;pass</stringProp>
    <stringProp name="delimiter">;</stringProp><boolProp name="ignoreFirstLine">true</boolProp>
    <boolProp name="quotedData">true</boolProp><boolProp name="recycle">true</boolProp>
  </CSVDataSet><hashTree/>
  <HTTPSamplerProxy testname="Login" enabled="true">
    <stringProp name="HTTPSampler.path">/login</stringProp><stringProp name="HTTPSampler.method">POST</stringProp>
    <elementProp name="HTTPsampler.Arguments" elementType="Arguments"><collectionProp name="Arguments.arguments">
      <elementProp name="user" elementType="HTTPArgument"><stringProp name="Argument.name">user</stringProp>
        <stringProp name="Argument.value">${user}</stringProp></elementProp>
      <elementProp name="pass" elementType="HTTPArgument"><stringProp name="Argument.name">pass</stringProp>
        <stringProp name="Argument.value">${pass}</stringProp></elementProp>
    </collectionProp></elementProp></HTTPSamplerProxy><hashTree/>
</hashTree></hashTree></hashTree></jmeterTestPlan>
"""


def test_jmx_csv_logins_never_send_the_header_row(stack: Cluster, server: RecordingServer, tmp_path):
    """The reported case end to end: a CSV Data Set with ignoreFirstLine over a file with a
    header line, saved with a byte-order mark and CRLF, a ';' delimiter and a quoted field."""
    (tmp_path / "users.csv").write_bytes(b'\xef\xbb\xbfuser;pass\r\nann;s1\r\nbob;"s;2"\r\n')
    (tmp_path / "logins.jmx").write_text(JMX_PLAN)
    result = run_imported(stack, tmp_path, "jmx", str(tmp_path / "logins.jmx"), "--target", server.url,
                          rate=3, duration="2s")
    got = server.recorder.wait_for(4)
    assert {r.body for r in got} == {b"user=ann&pass=s1", b"user=bob&pass=s%3B2"}
    assert all(r.method == "POST" and r.target == "/login" and r.header("x-run") == "r-1" for r in got)
    assert all(r.header("content-type") == "application/x-www-form-urlencoded" for r in got)
    assert [u for u in result["unmapped"] if "Users CSV" in u] == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a test certificate")
def test_curl_insecure_https_plan_sends_what_curl_sends(stack: Cluster, tmp_path):
    from tests.integration.test_scenarios import self_signed

    with RecordingServer(tls=self_signed(tmp_path)) as server:
        script = tmp_path / "tls.sh"
        script.write_text(f"curl -sk {server.url}/secure -H 'Content-Type: text/plain' -d 'over tls'\n")
        subprocess.run(["bash", str(script)], check=True, capture_output=True, timeout=30)
        by_curl = server.recorder.take()
        assert len(by_curl) == 1
        result = run_imported(stack, tmp_path, "curl", str(script))
        assert keys(server.recorder.wait_for(1)[:1]) == keys(by_curl)
        assert result["plan"]["insecure"] is True and result["everything_mapped"]
