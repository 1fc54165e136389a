"""The engine surface (services/generator/load.py): every engine has it; one engine runs
every plan, and what an arrival does is chosen once per plan."""

from __future__ import annotations

import asyncio
import time

import pytest

from schemas.control import Assignment, Segment
from services.generator.engine import Engine
from services.generator.flows import Users
from services.generator.load import ByAlpn, LoadEngine, engine_for
from services.generator.workers import PooledEngine
from services.plan import loader


def assignment(**plan_fields) -> Assignment:
    raw = {"name": "p", "target": "http://127.0.0.1:9", "rate": 10, "duration": 1,
           "requests": [{"name": "r"}], **plan_fields}
    now = time.time()
    return Assignment(run_id="r1", epoch=1, share=1.0, start_at=now, end_at=now + 1,
                      profile=[Segment(0.0, 1.0, 10.0, 10.0)], plan=loader.from_obj(raw))


@pytest.mark.parametrize("cls", [Engine, PooledEngine, ByAlpn])
def test_every_engine_has_the_whole_surface(cls):
    for name in ("start", "rebase", "reassign", "now_s", "stop_pacing", "in_flight", "gather",
                 "take_interval", "drain"):
        assert callable(getattr(cls, name, None)), (cls, name)
    for name in ("gather", "drain"):
        assert asyncio.iscoroutinefunction(getattr(cls, name)), (cls, name)


async def test_a_static_plan_sends_a_request_per_arrival_and_a_stateful_one_runs_virtual_users():
    loop = asyncio.get_running_loop()
    for fields in ({}, {"headers": {"Authorization": "Bearer {{token}}"}, "vars": {"token": "t"}},
                   {"requests": [{"name": "r", "method": "POST", "json": {"id": "{{$uuid}}"}}]},
                   {"target": "https://127.0.0.1:9", "http2": "off", "insecure": True},
                   {"users": 2, "rate": None}, {"user_stages": [{"duration": 1, "target": 3}], "rate": None,
                                                "duration": None},
                   {"users": 2, "rate": None, "headers": {"X-Id": "{{$uuid}}"}}):
        # templates: a render, not a user; the closed model: a user per connection
        static = engine_for(assignment(**fields), loop)
        assert type(static) is Engine and isinstance(static, LoadEngine), fields
        assert static.users is None, fields
    # https with http2: auto: the target picks by ALPN, when the run is set up
    by_alpn = engine_for(assignment(target="https://127.0.0.1:9"), loop)
    assert type(by_alpn) is ByAlpn and isinstance(by_alpn, LoadEngine)
    await by_alpn.drain(0.1)
    for fields in ({"headers": {"X-User": "{{__user}}"}},
                   {"target": "https://127.0.0.1:9", "headers": {"X-User": "{{__user}}"}},
                   {"follow_redirects": 1},
                   {"users": 2, "rate": None, "headers": {"X-It": "{{__iteration}}"}}):
        flow = engine_for(assignment(**fields), loop)
        assert type(flow) is Engine and isinstance(flow, LoadEngine), fields
        assert type(flow.users) is Users and flow.names == ["r"], fields
    closed = engine_for(assignment(users=2, rate=None, setup={"steps": [{"path": "/login"}]}), loop)
    assert closed.closed_loop and closed.users.closed
