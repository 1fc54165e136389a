"""The one plan factory of the tests: a plan as a user writes it, from a preset and overrides.

``raw(PRESET, target, **fields)`` is the plan as a dict (what a YAML file or ``nats req``
holds), ``plan(...)`` the same read by ``services.plan.loader`` (a ``Plan``, or
``InvalidPlan``). A field given as ``None`` is left out, so a test can take a preset's
``rate``/``duration`` away to give ``stages`` or ``users`` instead. Presets hold only what
some test needs; a test spells out in its overrides what its assertions depend on.
"""

from __future__ import annotations

import copy
from typing import Any

from schemas.plan import Plan
from services.plan import loader

TARGET = "http://127.0.0.1:8080"

#: one request at 1/s for 1 s: for tests about anything but the load
BASIC: dict[str, Any] = {"name": "p", "target": TARGET, "rate": 1, "duration": 1, "requests": [{"name": "a"}]}

#: a rate plan of one GET, the loader's tests' starting point
SHOP: dict[str, Any] = {
    "name": "shop", "target": TARGET, "rate": 100, "duration": 30,
    "requests": [{"name": "home", "path": "/"}],
}

#: two requests, no checks: the aggregate's (names "home" and "order")
TWO: dict[str, Any] = {
    "name": "shop", "target": TARGET, "rate": 100, "duration": 10,
    "requests": [{"name": "home"}, {"name": "order", "method": "POST"}],
}

#: two checked requests against tests/conftest's target (the distributed runs)
CHECKED: dict[str, Any] = {
    "name": "it", "target": TARGET, "rate": 200, "duration": "4s", "connections": 16, "timeout": "2s",
    "requests": [
        {"name": "home", "path": "/", "weight": 3, "checks": {"status": 200}},
        {"name": "order", "method": "POST", "path": "/api/orders", "json": {"sku": "A1"},
         "checks": {"status": 201, "body_contains": "accepted"}},
    ],
}

#: a one-second run of 20/s on four connections against tests/conftest's target: the test
#: management tests (saved tests, schedules, quotas, the archive); give it a ``name``
SHORT: dict[str, Any] = {
    "name": "short", "target": TARGET, "rate": 20, "duration": 1, "connections": 4,
    "requests": [{"name": "home", "path": "/"}],
}

#: SHORT with its request checked, so that every run has a verdict (schedules and suites)
SHORT_CHECKED: dict[str, Any] = {**SHORT, "requests": [{"name": "home", "path": "/", "checks": {"status": 200}}]}

#: SHORT as a saved test with a relative threshold against its baseline (the archive)
ARCHIVED: dict[str, Any] = {
    **SHORT, "name": "shop", "thresholds": {"p99_ms": {"max_increase_pct": 50}, "error_rate": 0.01},
}

#: one request, two connections: the engine against hand-written targets
ENGINE: dict[str, Any] = {
    "name": "t", "target": TARGET, "rate": 1, "duration": 1, "connections": 2, "timeout": 2.0,
    "requests": [{"name": "r", "path": "/x"}],
}

#: a one-step flow to a TLS port nothing listens on (transport options)
ONE_FLOW: dict[str, Any] = {
    "name": "p", "target": "https://127.0.0.1:9", "rate": 1, "duration": 1,
    "flows": [{"name": "f", "steps": [{"path": "/"}]}],
}

#: virtual users in two weighted flows sharing a step, with vars and a setup
USER_FLOWS: dict[str, Any] = {
    "name": "p", "target": "http://127.0.0.1:9", "users": 10, "duration": 5,
    "vars": {"who": "ann", "greeting": "hi {{who}}"},
    "setup": {"steps": [{"path": "/login"}]},
    "flows": [
        {"name": "a", "weight": 3, "steps": [{"path": "/a"}, {"name": "shared", "path": "/s"}]},
        {"name": "b", "weight": 1, "steps": [{"name": "shared", "path": "/s"}]},
    ],
}

#: a login setup that extracts a token, unique data rows, thinks and checks (plan checks)
LOGIN_FLOW: dict[str, Any] = {
    "name": "flow", "target": TARGET, "users": 4, "duration": "10s",
    "setup": {"steps": [{"name": "login", "method": "POST", "path": "/login",
                         "json": {"username": "{{user}}"},
                         "extract": {"token": {"jsonpath": "$.token"}}}]},
    "data": {"rows": [{"user": "ann"}], "mode": "unique"},
    "flows": [{"name": "f", "steps": [
        {"path": "/api/me", "headers": {"Authorization": "Bearer {{token}}"},
         "think": {"min": "100ms", "max": "1s"}},
        {"path": "/x/{{$uuid}}", "think": "250ms", "check": {"jsonpath": {"path": "$.a"}}},
    ]}],
}

#: per-user login, then a flow that reuses the token and the cookie (tests/conftest's
#: login target); an open rate: give ``rate`` and ``duration``
SHOP_FLOW: dict[str, Any] = {
    "name": "h2-flow", "target": TARGET, "insecure": True, "timeout": "2s",
    "vars": {"username": "ann", "password": "secret"},
    "setup": {"scope": "user", "steps": [{
        "name": "login", "method": "POST", "path": "/login",
        "json": {"username": "{{username}}", "password": "{{password}}"},
        "extract": {"token": {"jsonpath": "$.token"}, "sid": {"cookie": "sid"}},
        "check": {"status": 200, "jsonpath": {"path": "$.user", "equals": "{{username}}"}},
    }]},
    "flows": [{"name": "shop", "steps": [
        {"name": "me", "path": "/api/me", "headers": {"Authorization": "Bearer {{token}}"},
         "check": {"status": 200, "jsonpath": {"path": "$.ok", "equals": True}}},
        {"name": "cart", "method": "POST", "path": "/api/cart",
         "headers": {"Authorization": "Bearer {{token}}", "X-Session": "{{sid}}"},
         "json": {"sku": "SKU-001", "qty": 2},
         "check": {"status": 200, "regex": "\"user\": \"ann\""}},
    ]}],
    "thresholds": {"error_rate": 0.0001},
}


def raw(preset: dict[str, Any] = BASIC, target: str | None = None, **fields: Any) -> dict[str, Any]:
    """``preset`` (copied) with ``target`` and ``fields`` over it; None leaves a field out."""
    obj = copy.deepcopy(preset)
    if target is not None:
        obj["target"] = target
    obj.update(fields)
    return {k: v for k, v in obj.items() if v is not None}


def plan(preset: dict[str, Any] = BASIC, target: str | None = None, **fields: Any) -> Plan:
    """``raw(...)`` read as the coordinator reads it."""
    return loader.from_obj(raw(preset, target, **fields))
