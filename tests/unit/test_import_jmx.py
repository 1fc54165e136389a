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
