"""Semantic checks of a plan's scenario parts: flows, setup, extraction, checks, data.

Pure. Called by ``plans.check``; every error names its field as a dotted path
(``flows.0.steps.2.extract.token.jsonpath``). Expressions (JSONPath, regex, XPath,
CSS, templates) are compiled here exactly as the generator will compile them, so a
plan that validates does not fail on a generator.
"""

from __future__ import annotations

import random
from urllib.parse import urlsplit

from schemas.errors import InvalidPlan
from schemas.plan import Flow, Plan, RequestSpec, Step
from services.plan import extract, templating
from services.plan.names import reported_names

BUILTIN_VARS = frozenset({"__user", "__iteration", "__generator"})


def defined_vars(plan: Plan) -> set[str]:
    """Every variable some part of the plan can set."""
    names = set(plan.vars) | set(BUILTIN_VARS)
    for feed in plan.data:
        for row in feed.rows[:100]:
            names.update(row)
    steps = list(plan.setup.steps) if plan.setup else []
    for flow in plan.flows:
        steps.extend(flow.steps)
    for step in steps:
        names.update(step.extract)
    return names


def check(plan: Plan) -> None:
    from services.plan.loader import _check_headers

    _check_threshold_names(plan)

    if plan.proxy is not None:
        p = urlsplit(plan.proxy)
        if p.scheme not in ("http", "https") or not p.hostname:
            raise InvalidPlan("proxy must be http://host:port", "proxy")
    for i, feed in enumerate(plan.data):
        if not feed.rows:
            what = f"data file {feed.file!r} has no rows" if feed.file else "a data feed needs rows or a file"
            hint = "" if feed.rows or not feed.file else " (files are read by the CLI: `surge run/validate FILE`)"
            raise InvalidPlan(what + hint, f"data.{i}.{'file' if feed.file else 'rows'}")
    check_names_and_weights(plan.flows, "flow", "flows")
    known = defined_vars(plan)
    for key, value in plan.vars.items():
        _template(value, known, f"vars.{key}")
        for name in templating.references(value):
            if name not in plan.vars:  # vars render once per engine, before any user
                raise InvalidPlan(f"{{{{{name}}}}} changes per virtual user (a data column, an extract "
                                  f"or a built-in): a var can name only generators and other vars; "
                                  f"use {{{{{name}}}}} where the var is used", f"vars.{key}")
    for i, r in enumerate(plan.requests):
        _template_message(r, known, f"requests.{i}")
    for k, v in plan.headers.items():
        _template(v, known, f"headers.{k}")
    if plan.setup:
        for j, step in enumerate(plan.setup.steps):
            _check_step(step, known, f"setup.steps.{j}", _check_headers)
    for i, flow in enumerate(plan.flows):
        for j, step in enumerate(flow.steps):
            _check_step(step, known, f"flows.{i}.steps.{j}", _check_headers)
    _check_rendered_headers(plan, _check_headers)


def _check_rendered_headers(plan: Plan, check_headers) -> None:
    """A header templated from the plan's ``vars`` only is checked as it will be sent
    (the vars rendered once, as the generator does), as a literal value is: a var that
    puts a character HTTP cannot carry there is an invalid plan naming the header, not
    an encoding error when a generator starts the run. Headers that use data columns or
    extracted values are known only at run time."""
    try:
        values = templating.render_vars(plan.vars, random.Random(0))
    except templating.TemplateError as exc:  # a var that refers to itself
        raise InvalidPlan(str(exc), f"vars.{exc.var}") from None  # type: ignore[attr-defined]
    except templating.MissingVariable:
        return  # vars built from data columns: known only at run time
    layers = [("headers", plan.headers)]
    layers += [(f"requests.{i}.headers", r.headers) for i, r in enumerate(plan.requests)]
    if plan.setup:
        layers += [(f"setup.steps.{j}.headers", s.headers) for j, s in enumerate(plan.setup.steps)]
    for i, flow in enumerate(plan.flows):
        layers += [(f"flows.{i}.steps.{j}.headers", s.headers) for j, s in enumerate(flow.steps)]
    for field, headers in layers:
        rendered = {k: templating.Template(v, random.Random(0)).render(values)
                    for k, v in headers.items()
                    if "{{" in v and set(templating.references(v)) <= values.keys()}
        check_headers(rendered, field)


def check_names_and_weights(items: list[RequestSpec] | list[Flow], kind: str, field: str) -> None:
    """Requests or flows: each name once, and a weight above 0 somewhere."""
    names = [x.name for x in items]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InvalidPlan(f"{kind} name {name!r} is used twice", f"{field}.{i}.name")
    if items and sum(x.weight for x in items) <= 0:
        raise InvalidPlan(f"at least one {kind} needs a weight above 0", f"{field}.0.weight")


def _template_message(m: RequestSpec | Step, known: set[str], field: str) -> None:
    """The templates of what a request or a step sends: path, headers, body or json."""
    _template(m.path, known, f"{field}.path")
    for k, v in m.headers.items():
        _template(v, known, f"{field}.headers.{k}")
    if m.body is not None:
        _template(m.body, known, f"{field}.body")
    if m.json is not None:
        _template_json(m.json, known, f"{field}.json")


def _check_step(step: Step, known: set[str], field: str, check_headers) -> None:
    if step.body is not None and step.json is not None:
        raise InvalidPlan("give body or json, not both", f"{field}.body")
    check_headers(step.headers, f"{field}.headers")
    _template_message(step, known, field)
    for var, rule in step.extract.items():
        try:
            extract.Extractor(var, rule)
        except extract.ExtractError as exc:
            raise InvalidPlan(str(exc), f"{field}.extract.{var}") from None
        except templating.TemplateError as exc:
            raise InvalidPlan(str(exc), f"{field}.extract.{var}.value") from None
        if rule.value is not None:
            _template(rule.value, known, f"{field}.extract.{var}.value")
    if step.check is not None:
        try:
            extract.Checker(step.check)
        except extract.ExtractError as exc:
            raise InvalidPlan(str(exc), f"{field}.check") from None
        c = step.check
        for n, j in enumerate(c.jsonpath):
            if isinstance(j.equals, str):
                _template(j.equals, known, f"{field}.check.jsonpath.{n}.equals")
        if c.body_min is not None and c.body_max is not None and c.body_min > c.body_max:
            raise InvalidPlan("body_min is above body_max", f"{field}.check.body_min")
    think = step.think
    if think is not None and not isinstance(think, (int, float)) and think.min > think.max:
        raise InvalidPlan("think.min is above think.max", f"{field}.think.min")


def _template(text: str, known: set[str], field: str) -> None:
    try:
        refs = templating.references(text)
    except templating.TemplateError as exc:
        raise InvalidPlan(str(exc), field) from None
    for name in refs:
        if name not in known:
            raise InvalidPlan(
                f"{{{{{name}}}}} is not set anywhere (vars, data columns or an extract)", field
            )


def _template_json(value, known: set[str], field: str) -> None:
    if isinstance(value, str):
        _template(value, known, field)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _template_json(v, known, f"{field}.{i}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _template(str(k), known, f"{field}.{k}")
            _template_json(v, known, f"{field}.{k}")


def _check_threshold_names(plan: Plan) -> None:
    """A per-request threshold names a request (or flow step) the run will report."""
    if not plan.thresholds.requests:
        return
    names = reported_names(plan)
    for name in plan.thresholds.requests:
        if name not in names:
            shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
            raise InvalidPlan(f"no request or flow step is named {name!r}; this plan reports {shown}",
                              f"thresholds.requests.{name}")
