"""JMeter .jmx → plan: CSV data sets, functions and properties, managers, load models.

Each input is a small self-made test plan (``jmx(...)`` wraps elements in a thread group).
"""

from __future__ import annotations

import pytest

from services.plan import importers, loader
from services.plan.importers import jmx as jmx_importer


def jmx(*elements: str, group: str = "", plan_args: str = "") -> str:
    """A test plan: one thread group holding ``elements`` (each followed by its hashTree)."""
    group = group or ('<ThreadGroup testname="Users" enabled="true">'
                      '<stringProp name="ThreadGroup.num_threads">2</stringProp>'
                      '<stringProp name="ThreadGroup.ramp_time">0</stringProp></ThreadGroup>')
    body = "".join(e if e.startswith("<hashTree") else e + "<hashTree/>" for e in elements)
    return ('<?xml version="1.0" encoding="UTF-8"?><jmeterTestPlan version="1.2"><hashTree>'
            f'<TestPlan testname="T" enabled="true">{plan_args}</TestPlan><hashTree>'
            f'{group}<hashTree>{body}</hashTree></hashTree></hashTree></jmeterTestPlan>')


def sampler(path: str = "/login?u=${user}&amp;p=${pass}", name: str = "Login", domain: str = "127.0.0.1",
            port: str = "8080", method: str = "GET", extra: str = "") -> str:
    return (f'<HTTPSamplerProxy testname="{name}" enabled="true">'
            f'<stringProp name="HTTPSampler.domain">{domain}</stringProp>'
            f'<stringProp name="HTTPSampler.port">{port}</stringProp>'
            f'<stringProp name="HTTPSampler.path">{path}</stringProp>'
            f'<stringProp name="HTTPSampler.method">{method}</stringProp>{extra}</HTTPSamplerProxy>')


def csv_set(**props: str) -> str:
    props = {"filename": "users.csv", **props}
    inner = "".join(f'<stringProp name="{k}">{v}</stringProp>' for k, v in props.items())
    return f'<CSVDataSet testname="Users" enabled="true">{inner}</CSVDataSet>'


def load(text: str, tmp_path) -> tuple[object, list[str]]:
    imp = jmx_importer.convert(text, base_dir=str(tmp_path), out_dir=str(tmp_path))
    importers.build(imp, out_dir=str(tmp_path))
    return loader.from_obj(loader.embed_data(imp.plan, str(tmp_path))), imp.unmapped


def test_ignore_first_line_skips_the_header_the_variable_names_replace(tmp_path):
    (tmp_path / "users.csv").write_text("user,pass\nann,s1\nbob,s2\n")
    plan, unmapped = load(jmx(csv_set(variableNames="user,pass", ignoreFirstLine="true"), sampler()),
                          tmp_path)
    assert plan.data[0].rows == [{"user": "ann", "pass": "s1"}, {"user": "bob", "pass": "s2"}]
    assert unmapped == [] or all("Users" not in u for u in unmapped)


def test_without_ignore_first_line_every_line_is_data(tmp_path):
    (tmp_path / "users.csv").write_text("ann,s1\nbob,s2\n")
    plan, _ = load(jmx(csv_set(variableNames="user,pass"), sampler()), tmp_path)
    assert [r["user"] for r in plan.data[0].rows] == ["ann", "bob"]


def test_without_variable_names_the_first_line_names_the_columns(tmp_path):
    (tmp_path / "users.csv").write_text("user,pass\nann,s1\n")
    plan, _ = load(jmx(csv_set(ignoreFirstLine="true"), sampler()), tmp_path)
    assert plan.data[0].rows == [{"user": "ann", "pass": "s1"}]


@pytest.mark.parametrize("delimiter,raw", [(";", "ann;s,1\n"), ("\\t", "ann\ts,1\n"), ("|", "ann|s,1\n")])
def test_delimiter(tmp_path, delimiter, raw):
    (tmp_path / "users.csv").write_text(raw)
    plan, _ = load(jmx(csv_set(variableNames=f"user{delimiter}pass".replace("\\t", "\t"),
                               delimiter=delimiter), sampler()), tmp_path)
    assert plan.data[0].rows == [{"user": "ann", "pass": "s,1"}]


def test_quoted_data(tmp_path):
    (tmp_path / "users.csv").write_text('ann,"a,b"\n')
    plan, _ = load(jmx(csv_set(variableNames="user,pass", quotedData="true"), sampler()), tmp_path)
    assert plan.data[0].rows == [{"user": "ann", "pass": "a,b"}]
    (tmp_path / "users.csv").write_text('ann,"ab"\n')
    plan, _ = load(jmx(csv_set(variableNames="user,pass", quotedData="false"), sampler()), tmp_path)
    assert plan.data[0].rows == [{"user": "ann", "pass": '"ab"'}]  # JMeter keeps the quotes


@pytest.mark.parametrize("recycle,stop,mode,listed", [
    ("true", "false", "cycle", False), ("true", "true", "cycle", False),
    ("false", "true", "unique", False), ("false", "false", "unique", True),
])
def test_recycle_and_stop_thread(tmp_path, recycle, stop, mode, listed):
    (tmp_path / "users.csv").write_text("user,pass\nann,s1\n")
    plan, unmapped = load(jmx(csv_set(recycle=recycle, stopThread=stop), sampler()), tmp_path)
    assert plan.data[0].mode == mode
    assert any("<EOF>" in u for u in unmapped) is listed


@pytest.mark.parametrize("share,listed", [("shareMode.all", False), ("shareMode.group", False),
                                          ("shareMode.thread", True)])
def test_share_mode(tmp_path, share, listed):
    (tmp_path / "users.csv").write_text("user,pass\nann,s1\n")
    _, unmapped = load(jmx(csv_set(shareMode=share), sampler()), tmp_path)
    assert any("share mode" in u for u in unmapped) is listed


def test_other_file_encoding_is_listed(tmp_path):
    (tmp_path / "users.csv").write_text("user,pass\nann,s1\n")
    _, unmapped = load(jmx(csv_set(fileEncoding="ISO-8859-1"), sampler()), tmp_path)
    assert any("ISO-8859-1" in u for u in unmapped)


def test_functions_and_properties_in_any_field(tmp_path):
    path = ("/p/${__P(section,shop)}/${__property(lang,,en)}?r=${__Random(1,9)}&amp;t=${__time()}"
            "&amp;s=${__time(/1000,)}&amp;u=${__UUID}&amp;v=${__UUID()}&amp;n=${__threadNum}"
            "&amp;x=${__RandomString(5,abc)}&amp;e=${__eval(x)}")
    plan, unmapped = load(jmx(sampler(path=path)), tmp_path)
    step = plan.flows[0].steps[0]
    assert step.path == ("/p/shop/en?r={{$randint(1,9)}}&t={{$timestamp_ms}}&s={{$timestamp}}"
                         "&u={{$uuid}}&v={{$uuid}}&n={{__user}}&x={{$randstr(5)}}&e=${__eval(x)}")
    joined = "\n".join(unmapped)
    assert "property 'section' (JMeter -Jsection=...) read as its default 'shop'" in joined
    assert "__eval has no Surge equivalent" in joined and "'abc'" in joined


def test_server_name_port_and_thread_counts_from_variables_and_properties(tmp_path):
    args = ('<elementProp name="TestPlan.user_defined_variables" elementType="Arguments">'
            '<collectionProp name="Arguments.arguments">'
            '<elementProp name="host" elementType="Argument"><stringProp name="Argument.name">host</stringProp>'
            '<stringProp name="Argument.value">${__P(host,127.0.0.9)}</stringProp></elementProp>'
            '</collectionProp></elementProp>')
    group = ('<ThreadGroup testname="G" enabled="true">'
             '<stringProp name="ThreadGroup.num_threads">${__P(users,7)}</stringProp>'
             '<stringProp name="ThreadGroup.ramp_time">${__P(ramp,0)}</stringProp>'
             '<boolProp name="ThreadGroup.scheduler">true</boolProp>'
             '<stringProp name="ThreadGroup.duration">${__P(dur,20)}</stringProp></ThreadGroup>')
    plan, _ = load(jmx(sampler(path="/", domain="${host}", port="${__P(port,8081)}"), group=group,
                       plan_args=args), tmp_path)
    assert plan.target == "http://127.0.0.9:8081"
    assert (plan.users, plan.duration, plan.model) == (7, 20, "closed")


def test_header_cookie_and_auth_managers(tmp_path):
    headers = ('<HeaderManager testname="H" enabled="true"><collectionProp name="HeaderManager.headers">'
               '<elementProp name="" elementType="Header"><stringProp name="Header.name">X-A</stringProp>'
               '<stringProp name="Header.value">${__P(a,1)}</stringProp></elementProp></collectionProp></HeaderManager>')
    cookies = ('<CookieManager testname="C" enabled="true"><collectionProp name="CookieManager.cookies">'
               '<elementProp name="sid" elementType="Cookie"><stringProp name="Cookie.value">s-1</stringProp>'
               '</elementProp></collectionProp></CookieManager>')
    auth = ('<AuthManager testname="A" enabled="true"><collectionProp name="AuthManager.auth_list">'
            '<elementProp name="" elementType="Authorization">'
            '<stringProp name="Authorization.url">http://127.0.0.1:8080/admin</stringProp>'
            '<stringProp name="Authorization.username">u</stringProp>'
            '<stringProp name="Authorization.password">p</stringProp></elementProp>'
            '<elementProp name="" elementType="Authorization"><stringProp name="Authorization.url"></stringProp>'
            '<stringProp name="Authorization.mechanism">DIGEST</stringProp></elementProp>'
            '</collectionProp></AuthManager>')
    plan, unmapped = load(jmx(headers, cookies, auth, sampler(path="/admin/x", name="adm"),
                              sampler(path="/pub", name="pub")), tmp_path)
    assert plan.headers == {"X-A": "1", "Cookie": "sid=s-1"}
    s = {st.name: st for st in plan.flows[0].steps}
    assert s["adm"].headers == {"Authorization": "Basic dTpw"} and "Authorization" not in s["pub"].headers
    assert any("TestPlan 'T' > ThreadGroup 'Users' > AuthManager 'A': DIGEST" in u for u in unmapped)


def test_throughput_timers_make_the_open_model(tmp_path):
    timer = ('<PreciseThroughputTimer testname="P" enabled="true">'
             '<doubleProp><name>throughput</name><value>120.0</value></doubleProp>'
             '<intProp name="throughputPeriod">60</intProp></PreciseThroughputTimer>')
    plan, _ = load(jmx(timer, sampler()), tmp_path)
    assert plan.model == "open" and plan.rate == 2


def test_unmapped_elements_are_listed_with_their_path(tmp_path):
    script = '<JSR223PostProcessor testname="log it" enabled="true"/>'
    ctrl = ('<IfController testname="only admins" enabled="true"/>', '<hashTree>' + sampler(name="in if")
            + '<hashTree/></hashTree>')
    _, unmapped = load(jmx(*ctrl, sampler(extra=""), script), tmp_path)
    assert "TestPlan 'T' > ThreadGroup 'Users' > IfController 'only admins': its condition" in "\n".join(unmapped)
    assert any(u.startswith("TestPlan 'T' > ThreadGroup 'Users' > JSR223PostProcessor 'log it'") for u in unmapped)


def test_multipart_and_file_uploads_are_listed_not_sent_as_a_form(tmp_path):
    files = ('<elementProp name="HTTPsampler.Files" elementType="HTTPFileArgs"><collectionProp name="HTTPFileArgs.files">'
             '<elementProp name="a.png" elementType="HTTPFileArg"><stringProp name="File.path">a.png</stringProp>'
             '</elementProp></collectionProp></elementProp>')
    imp = jmx_importer.convert(jmx(sampler(name="up", method="POST", extra=files), sampler(name="ok")),
                               base_dir=str(tmp_path), out_dir=str(tmp_path))
    assert [s["name"] for s in imp.plan["flows"][0]["steps"]] == ["ok"]
    assert any("'up': a multipart body / file upload is not mapped; not sent" in u for u in imp.unmapped)


def test_a_user_defined_variable_built_from_a_per_thread_function_is_written_where_used(tmp_path):
    """Surge vars render once, before any user: ``who = u${__threadNum}`` cannot be one.
    Its text goes where ``${who}`` is used (each user its own value, as each JMeter
    thread has), and the import says so; the plan validates."""
    args = ('<elementProp name="TestPlan.user_defined_variables" elementType="Arguments">'
            '<collectionProp name="Arguments.arguments">'
            '<elementProp name="who" elementType="Argument"><stringProp name="Argument.name">who</stringProp>'
            '<stringProp name="Argument.value">u${__threadNum}</stringProp></elementProp>'
            '<elementProp name="tag" elementType="Argument"><stringProp name="Argument.name">tag</stringProp>'
            '<stringProp name="Argument.value">${who}-t</stringProp></elementProp>'
            '<elementProp name="k" elementType="Argument"><stringProp name="Argument.name">k</stringProp>'
            '<stringProp name="Argument.value">fixed</stringProp></elementProp>'
            '</collectionProp></elementProp>')
    plan, unmapped = load(jmx(sampler(path="/x/${who}/${tag}/${k}"), plan_args=args), tmp_path)
    assert plan.flows[0].steps[0].path == "/x/u{{__user}}/u{{__user}}-t/{{k}}"
    assert plan.vars == {"k": "fixed"}
    assert any("who" in line and "tag" in line and "per virtual user" in line for line in unmapped), unmapped
