"""Field paths out of msgspec validation messages, for errors that name the field."""

from __future__ import annotations

import re

_PATH_RE = re.compile(r"(?:at|in) `\$((?:\.[^`\[]+|\[\d+\]|\[\.\.\.\])*)`")
_UNKNOWN_RE = re.compile(r"unknown field `([^`]+)`")
_MISSING_RE = re.compile(r"missing required field `([^`]+)`")


def field_of(message: str) -> str | None:
    """'Expected `int` - at `$.requests[1].weight`' -> 'requests.1.weight'."""
    m = _PATH_RE.search(message)
    path = m.group(1) if m else ""
    path = re.sub(r"\[(\d+)\]", r".\1", path.replace("[...]", "")).lstrip(".")
    extra = _UNKNOWN_RE.search(message) or _MISSING_RE.search(message)
    if extra:
        path = f"{path}.{extra.group(1)}" if path else extra.group(1)
    return path or None
