"""Generator labels (pools): parse ``zone=eu-1,room=a`` and match a selector. Pure.

A generator carries labels in its heartbeat (SURGE_GENERATOR_LABELS); a plan's
``generators: {labels: {...}}`` and ``surge generators --label k=v`` select by them:
a generator matches when it has every label asked for, with the same value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from schemas.errors import BadRequest

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")
_VALUE = re.compile(r"^[A-Za-z0-9_.\-]{0,63}$")


def parse(text: str | Iterable[str], what: str = "SURGE_GENERATOR_LABELS") -> dict[str, str]:
    """``"zone=eu-1, room=a"`` (or a list of ``k=v``) -> {"zone": "eu-1", "room": "a"}.

    A pair with an empty value is left out (a Kubernetes node without that topology
    label gives an empty variable); anything else malformed raises BadRequest.
    """
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    out: dict[str, str] = {}
    for part in (p.strip() for p in parts):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.match(key) or not _VALUE.match(value):
            raise BadRequest(f"{what}: {part!r} is not key=value (letters, digits, - _ . /)", what)
        if value:
            out[key] = value
    return out


def matches(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def show(labels: Mapping[str, str]) -> str:
    """``room=a,zone=eu-1`` (sorted), or "" for none."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
