"""Postman → plan: variables resolved as newman resolves them, script-set ones extracted."""

from __future__ import annotations

import json

import pytest

from services.plan.importers import common, postman


def coll(*items: dict, variables: dict | None = None, auth: dict | None = None) -> str:
    doc = {"info": {"name": "c"}, "item": list(items),
           "variable": [{"key": k, "value": v} for k, v in (variables or {}).items()]}
    if auth:
        doc["auth"] = auth
    return json.dumps(doc)


def test_nested_and_environment_variables_resolve_and_script_set_ones_stay_templates():
    text = coll({"name": "login", "request": {"method": "POST", "url": "{{base}}/login",
                                              "body": {"mode": "raw", "raw": "{{creds}}"}},
                 "event": [{"listen": "test", "script": {"exec": ['pm.environment.set("tok", pm.response.json().t)']}}]},
                {"name": "me", "request": {"url": "{{base}}/me?t={{tok}}"}},
                variables={"base": "{{scheme}}://h:{{port}}", "scheme": "http", "port": "1",
                           "creds": "u={{user}}", "user": "coll", "tok": "initial"})
    env = json.dumps({"values": [{"key": "user", "value": "env"}, {"key": "port", "value": "2"},
                                 {"key": "off", "value": "x", "enabled": False}]})
    imp = postman.convert(text, environment=env)
    login, me = imp.plan["flows"][0]["steps"]
    assert imp.plan["target"] == "http://h:2"
    assert login["body"] == "u=env" and login["extract"] == {"tok": {"jsonpath": "$.t"}}
    assert me["path"] == "/me?t={{tok}}" and imp.plan["vars"] == {"tok": "initial"}
    assert imp.unmapped == []


def test_auth_inherits_from_folder_then_collection_and_noauth_stops_it():
    bearer = {"type": "bearer", "bearer": [{"key": "token", "value": "T"}]}
    basic = {"type": "basic", "basic": [{"key": "username", "value": "u"}, {"key": "password", "value": "p"}]}
    text = coll({"name": "F", "auth": basic, "item": [{"name": "a", "request": {"url": "http://h/a"}}]},
                {"name": "b", "request": {"url": "http://h/b"}},
                {"name": "c", "request": {"url": "http://h/c", "auth": {"type": "noauth"}}},
                {"name": "d", "request": {"url": "http://h/d", "auth": {"type": "digest", "digest": []}}},
                auth=bearer)
    imp = postman.convert(text)
    got = {s["name"]: s.get("headers", {}).get("Authorization") for s in imp.plan["flows"][0]["steps"]}
    assert got == {"F/a": "Basic dTpw", "b": "Bearer T", "c": None, "d": None}
    assert imp.unmapped == ["request 'd': auth type digest is not supported; sent without it"]


def test_a_bad_environment_is_an_import_error():
    with pytest.raises(common.ImportError_, match="environment"):
        postman.convert(coll({"name": "a", "request": {"url": "http://h/a"}}), environment="[1]")
