"""Threshold alerts on host samples: rules from config, "for N seconds", firing and resolved.

Pure: ``parse_rules`` reads the compact rule list of ``SURGE_ALERTS`` and ``Alerts``
turns a stream of ``HostSample``s into ``Alert`` events. A rule fires once its
condition has held for ``for_s`` seconds without a break (measured on the samples'
own timestamps) and resolves on the first sample where it no longer holds; a sample
without the metric (``None``) changes nothing.

Rule syntax, rules separated by commas or semicolons::

    [name=]metric OP threshold [for DURATION]
    cpu_high=cpu_pct>90 for 30s, disk_low=disk_free_pct<10, load1>=8 for 1m

OP is one of ``> >= < <=``; metric is any numeric field of ``HostSample``; DURATION is
seconds or a number with ``ms``, ``s``, ``m`` or ``h``. The name defaults to
``<metric>_<high|low>``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

import msgspec
from msgspec import Struct

from schemas.errors import BadRequest
from schemas.host import Alert, HostSample

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
METRICS = tuple(
    f.name for f in msgspec.structs.fields(HostSample)
    if f.type in (float, int, float | None, int | None) and f.name not in ("ts", "interval_s")
)
_RULE_RE = re.compile(
    r"^\s*(?:(?P<name>[A-Za-z0-9_-]+)\s*=\s*)?(?P<metric>[a-z0-9_]+)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?P<threshold>-?\d+(?:\.\d+)?)\s*(?:for\s+(?P<for>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?)?\s*$"
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class Rule(Struct, frozen=True, kw_only=True):
    name: str
    metric: str
    op: str
    threshold: float
    for_s: float = 0.0

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)

    def describe(self) -> str:
        held = f" for {self.for_s:g}s" if self.for_s else ""
        return f"{self.metric} {self.op} {self.threshold:g}{held}"


def parse_rules(text: str) -> list[Rule]:
    """The rules of ``SURGE_ALERTS``; BadRequest naming the bad rule otherwise."""
    rules: list[Rule] = []
    for part in re.split(r"[,;]", text):
        if not part.strip():
            continue
        m = _RULE_RE.match(part)
        if m is None:
            raise BadRequest(f"bad alert rule {part.strip()!r}: expected "
                             "'[name=]metric>threshold [for 30s]'", "SURGE_ALERTS")
        metric = m["metric"]
        if metric not in METRICS:
            raise BadRequest(f"alert rule {part.strip()!r}: unknown metric {metric!r}; "
                             f"one of {', '.join(METRICS)}", "SURGE_ALERTS")
        op = m["op"]
        name = m["name"] or f"{metric}_{'high' if op.startswith('>') else 'low'}"
        if any(r.name == name for r in rules):
            raise BadRequest(f"two alert rules are named {name!r}", "SURGE_ALERTS")
        for_s = float(m["for"]) * _UNITS[m["unit"]] if m["for"] else 0.0
        rules.append(Rule(name=name, metric=metric, op=op, threshold=float(m["threshold"]),
                          for_s=for_s))
    return rules


class _State:
    __slots__ = ("since", "firing")

    def __init__(self) -> None:
        self.since: float | None = None  # when the condition started to hold
        self.firing = False


class Alerts:
    """Evaluates rules over successive samples of one host."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._state = {r.name: _State() for r in rules}

    def firing(self) -> list[str]:
        return [name for name, st in self._state.items() if st.firing]

    def observe(self, sample: HostSample) -> list[Alert]:
        events = []
        for rule in self.rules:
            value = getattr(sample, rule.metric)
            if value is None:
                continue
            st = self._state[rule.name]
            if rule.holds(value):
                if st.since is None:
                    st.since = sample.ts
                if not st.firing and sample.ts - st.since >= rule.for_s:
                    st.firing = True
                    events.append(self._alert(rule, sample, value, "firing"))
            else:
                st.since = None
                if st.firing:
                    st.firing = False
                    events.append(self._alert(rule, sample, value, "resolved"))
        return events

    @staticmethod
    def _alert(rule: Rule, sample: HostSample, value: float, state: str) -> Alert:
        if state == "firing":
            message = f"{rule.name} on {sample.host}: {rule.metric} is {value:g} ({rule.describe()})"
        else:
            message = f"{rule.name} on {sample.host} resolved: {rule.metric} is {value:g}"
        return Alert(host=sample.host, ts=sample.ts, name=rule.name, metric=rule.metric,
                     value=float(value), threshold=rule.threshold, state=state,  # type: ignore[arg-type]
                     message=message)
