"""JMeter expressions in a .jmx (``${var}``, ``${__function(...)}``) → Surge templates.

The JMX importer hands every text field here. Two readings:

- ``text``: a field sent with each request. ``${var}`` becomes ``{{var}}``; the functions
  ``__UUID``, ``__Random``, ``__time``, ``__threadNum`` and ``__RandomString`` become
  Surge's built-ins; ``__P`` and ``__property`` read JMeter's default (no -J properties
  come with an import; each property read is listed once).
- ``static``: a field that must be known when the plan is made (server name, port,
  counts): user-defined variables and properties resolved to their values.

What has no Surge equivalent stays as written and is listed in ``unmapped``.
"""

from __future__ import annotations

import re

FUNC = re.compile(r"\$\{__(\w+)(?:\(((?:[^()]|\([^()]*\))*)\))?\}")
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Expressions:
    """Reads JMeter expressions for one import. ``unmapped`` is the importer's list of
    what was not mapped; ``raw_vars`` its user-defined variables as written (filled while
    the tree is walked, read by ``static``)."""

    def __init__(self, unmapped: list[str], raw_vars: dict[str, str]) -> None:
        self.unmapped = unmapped
        self.raw_vars = raw_vars
        self.properties: set[str] = set()  # -J properties read, each listed once

    def _property(self, name: str, args: list[str], where: str) -> str:
        """``__P(name,default)`` (default "1") and ``__property(name,var,default)`` (default
        the name): no -J properties come with an import, so JMeter's own default is used."""
        prop = args[0] if args else ""
        if name == "P":
            value = args[1] if len(args) > 1 else "1"
        else:
            value = args[2] if len(args) > 2 else prop
            if len(args) > 1 and args[1]:
                self.unmapped.append(f"{where}: __property stores into ${{{args[1]}}}: not mapped")
        if prop not in self.properties:
            self.properties.add(prop)
            self.unmapped.append(f"property {prop!r} (JMeter -J{prop}=...) read as its default "
                                 f"{value!r}; change it in the plan")
        return value

    def text(self, value: str, where: str) -> str:
        """A field sent with each request: ``${...}`` → ``{{...}}``."""
        def func(m: re.Match) -> str:
            name = m.group(1)
            args = [a.strip() for a in split_args(m.group(2))] if m.group(2) else []
            if name == "UUID":
                return "{{$uuid}}"
            if name == "Random" and len(args) >= 2:
                if len(args) > 2 and args[2]:
                    self.unmapped.append(f"{where}: __Random stores into ${{{args[2]}}}: not mapped")
                return "{{$randint(%s,%s)}}" % (args[0], args[1])
            if name == "time" and not any(args):
                return "{{$timestamp_ms}}"
            if name == "time" and args[:1] == ["/1000"] and not any(args[1:]):
                return "{{$timestamp}}"
            if name in ("P", "property"):
                return self._property(name, args, where)
            if name == "threadNum":
                return "{{__user}}"
            if name == "RandomString" and args and args[0].isdigit():
                if len(args) > 1 and args[1]:
                    self.unmapped.append(f"{where}: __RandomString's characters {args[1]!r} read as letters and digits")
                return "{{$randstr(%s)}}" % args[0]
            self.unmapped.append(f"{where}: JMeter function __{name} has no Surge equivalent")
            return m.group(0)

        return VAR.sub(r"{{\1}}", FUNC.sub(func, value))

    def static(self, value: str, where: str) -> str:
        """A field that must be known now (server name, port, counts): variables and
        properties resolved to their values."""
        for _ in range(5):
            new = VAR.sub(lambda m: self.raw_vars.get(m.group(1), m.group(0)), value)
            new = FUNC.sub(lambda m: self.text(m.group(0), where) if m.group(1) in ("P", "property")
                           else m.group(0), new)
            if new == value:
                break
            value = new
        if "${" in value:
            self.unmapped.append(f"{where}: {value!r} cannot be known before the run; left as is")
        return value


def split_args(text: str) -> list[str]:
    """A function's arguments: commas split them, ``\\,`` is a comma, nested calls stay whole."""
    out, cur, depth, i = [], "", 0, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur, i = cur + text[i + 1], i + 2
            continue
        depth += c in "({"
        depth -= c in ")}"
        if c == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    return out + [cur]
