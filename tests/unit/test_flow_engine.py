"""The flow engine's pure parts and its virtual users' state (no network)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from schemas.control import Assignment
from schemas.plan import Think
from services.plan import profile
from services.generator.flows import FlowEngine
from services.generator.session import Program, think_s
from services.generator.pool import Pool
from services.generator.h2pool import H2Pool
from services.generator import transport as transport_mod
from tests import plans


def test_program_names_steps_and_shares_same_named_steps():
    prog = Program(plans.plan(plans.USER_FLOWS), random.Random(0))
    assert prog.names == ["setup.1", "a.1", "shared"]
    assert prog.flows[0][1].index == prog.flows[1][0].index == 2
    assert prog.vars == {"who": "ann", "greeting": "hi ann"}


def test_flows_are_picked_by_weight():
    prog = Program(plans.plan(plans.USER_FLOWS), random.Random(0))
    rng = random.Random(1)
    picks = [prog.pick(rng) for _ in range(4000)]
    assert 0.72 < picks.count(0) / 4000 < 0.78


def test_static_requests_become_one_step_flows():
    p = plans.plan(plans.USER_FLOWS, flows=[], setup=None, vars={}, requests=[
        {"name": "home", "path": "/", "weight": 2, "checks": {"status": 200, "body_contains": "Shop"}}])
    prog = Program(p, random.Random(0))
    assert prog.names == ["home"] and prog.weights == [2]
    assert prog.flows[0][0].checker.contains == b"Shop"


def test_think_times():
    rng = random.Random(0)
    assert think_s(None, rng) == 0 and think_s(0.5, rng) == 0.5
    assert all(0.1 <= think_s(Think(0.1, 0.3), rng) <= 0.3 for _ in range(100))


@pytest.mark.parametrize("transport", [Pool, H2Pool])
async def test_users_get_fresh_state_and_the_generator_setup_cookies(transport):
    p = plans.plan(plans.USER_FLOWS)
    a = Assignment(run_id="r", epoch=1, share=1.0, start_at=time.time(), end_at=time.time() + 5,
                   profile=profile.from_plan(p), plan=p, index=1, count=3)
    engine = FlowEngine(a, asyncio.get_running_loop())
    engine.shared_vars = {"token": "t-1"}
    engine.shared_cookies = {"sid": "s-1"}
    engine.transport = transport(p, transport_mod.ssl_context(p))
    user = engine._user()
    try:
        assert user.vars["token"] == "t-1" and user.vars["who"] == "ann"
        assert user.vars["__generator"] == 1
        assert user.cookies() == {"sid": "s-1"}
        user.vars["extracted"] = "x"
        user.client.set_cookies({"other": "1"}, engine.base_url)
        assert user.cookies() == {"sid": "s-1", "other": "1"}
        user.reset()
        assert "extracted" not in user.vars and user.cookies() == {"sid": "s-1"}
    finally:
        await user.close()
        await engine.transport.close()
