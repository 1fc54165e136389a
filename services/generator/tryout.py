"""Send once (schemas/tryout.py): one iteration of a plan, every step seen in full.

Runs the setup steps, then each flow once, in order, as one virtual user would (its
variables and cookies carry from step to step), with the same compiled templates,
checks and extractors as virtual users (``session.Program``), on the transport a
run would choose. Nothing is recorded into any run: this is for people debugging.
A step's ``request_headers`` are the fields sent (docs/engine.md, "One request head":
the defaults, the plan's and the step's, Cookie), Content-Length aside.
"""

from __future__ import annotations

import random
import time
from typing import Any

from schemas.plan import Plan
from schemas.tryout import BODY_LIMIT, SendOnceResult, StepTry
from services.generator.encode import base_headers, merge_headers
from services.generator.session import CompiledStep, Program
from services.generator.transport import choose
from services.plan.extract import Response
from services.plan.templating import MissingVariable


def _text(data: bytes | None) -> tuple[str, bool]:
    if data is None:
        return "", False
    return data[:BODY_LIMIT].decode("utf-8", errors="replace"), len(data) > BODY_LIMIT


async def send_once(plan: Plan, generator_id: str) -> SendOnceResult:
    rng = random.Random(0)
    program = Program(plan, rng)
    transport = await choose(plan)
    client = transport.client()
    variables: dict[str, Any] = {**program.vars, "__user": 0, "__generator": 0, "__iteration": 0}
    for feed in plan.data:  # the first row of each feed stands for the user's draw
        if feed.rows:
            variables.update({k: v for k, v in feed.rows[0].items()})
    flows = [("setup", program.setup)] if program.setup else []
    names = list(plan.flows) or list(plan.requests)
    flows += [(names[i].name, steps) for i, steps in enumerate(program.flows)]
    out: list[StepTry] = []
    ok = True
    try:
        for flow, steps in flows:
            for step in steps:
                result = await _step(client, transport, program, plan, flow, step, variables)
                out.append(result)
                if result.error or result.check:
                    ok = False
                if result.error:  # later steps would lack what this one should have given
                    break
    finally:
        await client.close()
        await transport.close()
    return SendOnceResult(generator=generator_id, steps=out, ok=ok)


async def _step(client, transport, program: Program, plan: Plan, flow: str, step: CompiledStep,
                v: dict[str, Any]) -> StepTry:
    base = dict(flow=flow, name=step.name, method=step.method)
    try:
        url, headers, data = step.render(plan.target.rstrip("/"), program.headers, v)
    except MissingVariable as exc:
        return StepTry(**base, error=f"missing variable: {exc}")
    # what goes on the wire: the one request head (encode.merge_headers), the user's cookies
    fields = dict(merge_headers(base_headers(transport.host_header), headers.items()))
    if cookies := client.cookies():
        fields["Cookie"] = "; ".join(f"{k}={val}" for k, val in cookies.items())
    sent = time.monotonic()
    try:
        status, resp_headers, body = await client.send(step.method, url, headers, data, step.redirects)
    except Exception as exc:
        return StepTry(**base, url=url, request_headers=fields, request_body=_text(data)[0],
                       error=f"{transport.classify(exc)}: {exc or type(exc).__name__}")
    elapsed = time.monotonic() - sent
    r = Response(status, resp_headers, body, client.cookies() if step.wants_cookies else None, elapsed)
    check = step.checker(r, v)
    extracted: dict[str, str] = {}
    error = None
    for ex in step.extractors:
        try:
            v[ex.var] = ex(r, v)
            extracted[ex.var] = str(v[ex.var])
        except LookupError:
            error = f"extract {ex.var}: not found"
            break
    text, truncated = _text(body)
    return StepTry(**base, url=url, request_headers=fields, request_body=_text(data)[0] or None,
                   status=status, response_headers={k: str(val) for k, val in resp_headers.items()},
                   body=text, truncated=truncated, time_ms=round(elapsed * 1000, 3),
                   extracted=extracted, check=check, error=error)
