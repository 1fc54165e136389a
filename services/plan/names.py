"""The names a plan's requests are reported under. Pure.

A static request is reported under its ``name``; a flow step under its own name, else
``<flow>.<n>`` (``setup.<n>`` for setup steps), n counting from 1. The coordinator
checks thresholds against these names, the generator records under them, and reports
list them in this order.
"""

from __future__ import annotations

from schemas.plan import Plan, RequestSpec, Step, StepCheck


def step_name(step: Step, scope: str, j: int) -> str:
    """The name a step's requests are reported under: its own, else ``<flow>.<n>``
    (``setup.<n>`` for setup steps), n counting from 1."""
    return step.name or f"{scope}.{j + 1}"


def reported_names(plan: Plan) -> list[str]:
    """Every request name a run of this plan can report, each once, in plan order."""
    if not plan.flows:
        return [r.name for r in plan.requests]
    steps = [(s, "setup", j) for j, s in enumerate(plan.setup.steps)] if plan.setup else []
    steps += [(s, f.name, j) for f in plan.flows for j, s in enumerate(f.steps)]
    return list(dict.fromkeys(step_name(*t) for t in steps))


def as_step(r: RequestSpec) -> Step:
    """A static request as a one-step flow (plans that need virtual users for HTTP/2,
    a proxy, templating or the closed model, but list plain ``requests``)."""
    check = None
    if r.checks is not None:
        check = StepCheck(status=r.checks.status, contains=r.checks.body_contains)
    return Step(name=r.name, method=r.method, path=r.path, headers=r.headers, body=r.body,
                json=r.json, check=check)
