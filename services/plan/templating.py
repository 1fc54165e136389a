"""``{{var}}`` templates in paths, headers and bodies. Pure; compiled once per plan.

A template is split once into literal text and references; rendering joins them with
the virtual user's variables. References:

* ``{{name}}`` — a variable (plan ``vars``, a data row's column, an extracted value);
* ``{{$uuid}}``, ``{{$randint(a,b)}}``, ``{{$random}}`` (float in [0,1)),
  ``{{$timestamp}}`` (unix seconds), ``{{$timestamp_ms}}``, ``{{$randstr(n)}}``;
* ``{{name | urlencode}}`` — the variable encoded as a form field is (space as ``+``, only
  letters, digits and ``*-._`` kept): what a browser or JMeter sends for a form value.

In a JSON body a string that is exactly one reference keeps the value's type (an
extracted number stays a number); anything else renders to text.

On the load path a request is one ``Splice`` (its literal text joined once, the
references resolved per request) and a JSON body one ``JsonTemplate.encoder()`` (its
constant parts encoded once, only the templated values per request): the same text and
bytes as rendering the pieces and encoding the whole, for a fraction of the calls.
"""

from __future__ import annotations

import random
import re
import string
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote_plus

import msgspec

REF_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CALL_RE = re.compile(r"^\$([a-z_]+)(?:\((.*)\))?$")
_FILTER_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\|\s*([a-z_]+)$")


def form_encode(value: Any) -> str:
    """application/x-www-form-urlencoded, as browsers and Java's URLEncoder write it."""
    return quote_plus(value if isinstance(value, str) else _text(value), safe="*").replace("~", "%7E")


_FILTERS: dict[str, Callable[[Any], str]] = {"urlencode": form_encode}


def _filter(expr: str) -> tuple[str, Callable[[Any], str]] | None:
    m = _FILTER_RE.match(expr)
    if not m:
        return None
    if m.group(2) not in _FILTERS:
        raise TemplateError(f"unknown filter {{{{{expr}}}}} (use | urlencode)")
    return m.group(1), _FILTERS[m.group(2)]
_ALNUM = string.ascii_letters + string.digits


class TemplateError(ValueError):
    """A reference that is neither a variable name nor a known generator."""


class MissingVariable(KeyError):
    """Rendering needed a variable the virtual user does not have."""

    def __str__(self) -> str:
        return f"variable {self.args[0]!r} is not set"


def _generator(expr: str, rng: random.Random) -> Callable[[], Any]:
    m = _CALL_RE.match(expr)
    if not m:
        raise TemplateError(f"unknown reference {{{{{expr}}}}}")
    fn, args_text = m.group(1), m.group(2)
    args = [a.strip() for a in args_text.split(",")] if args_text else []
    try:
        nums = [int(a) for a in args]
    except ValueError:
        raise TemplateError(f"{{{{{expr}}}}}: arguments are integers") from None
    if fn == "uuid" and not nums:
        return lambda: uuid4_text(rng.getrandbits(128))
    if fn == "randint" and len(nums) == 2 and nums[0] <= nums[1]:
        lo, hi = nums
        return lambda: rng.randint(lo, hi)
    if fn == "random" and not nums:
        return rng.random
    if fn == "timestamp" and not nums:
        return lambda: int(time.time())
    if fn == "timestamp_ms" and not nums:
        return lambda: int(time.time() * 1000)
    if fn == "randstr" and len(nums) == 1 and 0 < nums[0] <= 4096:
        n = nums[0]
        return lambda: "".join(rng.choices(_ALNUM, k=n))
    raise TemplateError(
        f"unknown generator {{{{{expr}}}}} (use $uuid, $randint(a,b), $random, $timestamp, "
        "$timestamp_ms, $randstr(n))"
    )


_UUID_KEEP = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)


def uuid4_text(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))`` without the UUID object (3× cheaper)."""
    h = "%032x" % ((bits & _UUID_KEEP) | _UUID_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def references(text: str) -> list[str]:
    """Variable names a text refers to (generators excluded). Raises TemplateError."""
    names = []
    for m in REF_RE.finditer(text):
        expr = m.group(1)
        if expr.startswith("$"):
            _generator(expr, random.Random(0))
        elif _VAR_RE.match(expr):
            names.append(expr)
        elif (f := _filter(expr)) is not None:
            names.append(f[0])
        else:
            raise TemplateError(f"not a variable name or generator: {{{{{expr}}}}}")
    return names


def references_in(value: Any) -> list[str]:
    """Variable names referred to anywhere in a JSON-like value."""
    if isinstance(value, str):
        return references(value)
    if isinstance(value, list):
        return [n for v in value for n in references_in(v)]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in references(str(k)) + references_in(v)]
    return []


def render_vars(variables: Mapping[str, str], rng: random.Random | None = None) -> dict[str, str]:
    """A plan's ``vars``, each rendered once: a var that names another var gets that
    var's rendered value, whatever their order (as Postman and k6 resolve variables).
    A var that refers to itself, directly or through others, raises TemplateError
    naming it; a name that is no var raises MissingVariable, as ``render`` does."""
    rng = rng or random.Random()
    done: dict[str, str] = {}

    def value(name: str, path: tuple[str, ...]) -> str:
        if name in done:
            return done[name]
        text = variables[name]
        if "{{" in text:
            if name in path:
                err = TemplateError(f"{{{{{name}}}}} refers to itself "
                                    f"({' -> '.join(path[path.index(name):] + (name,))})")
                err.var = path[path.index(name)]  # type: ignore[attr-defined]
                raise err
            refs = {n: value(n, path + (name,)) for n in references(text) if n in variables}
            text = Template(text, rng).render(refs)
        done[name] = text
        return text

    for name in variables:
        value(name, ())
    return done


class Template:
    """A compiled text template. ``static`` when it has no reference at all."""

    __slots__ = ("parts", "static", "single")

    def __init__(self, text: str, rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        parts: list[str | tuple[str, Callable[[], Any] | None]] = []
        pos = 0
        for m in REF_RE.finditer(text):
            if m.start() > pos:
                parts.append(text[pos:m.start()])
            expr = m.group(1)
            if expr.startswith("$"):
                parts.append((expr, _generator(expr, rng)))
            elif _VAR_RE.match(expr):
                parts.append((expr, None))
            elif (f := _filter(expr)) is not None:
                parts.append(f)  # (variable, filter): see _resolve
            else:
                raise TemplateError(f"not a variable name or generator: {{{{{expr}}}}}")
            pos = m.end()
        if pos < len(text):
            parts.append(text[pos:])
        self.parts = parts
        self.static = all(isinstance(p, str) for p in parts)
        self.single = len(parts) == 1 and not isinstance(parts[0], str)

    def value(self, variables: Mapping[str, Any]) -> Any:
        """The rendered value; a template that is one reference keeps its type."""
        if self.single:
            return _resolve(self.parts[0], variables)  # type: ignore[arg-type]
        return self.render(variables)

    def render(self, variables: Mapping[str, Any]) -> str:
        if self.static:
            return "".join(self.parts)  # type: ignore[arg-type]
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                v = _resolve(p, variables)
                out.append(v if isinstance(v, str) else _text(v))
        return "".join(out)


def _resolve(part: tuple[str, Callable[[], Any] | None], variables: Mapping[str, Any]) -> Any:
    name, gen = part
    if gen is not None and name[0] == "$":
        return gen()
    try:
        value = variables[name]
    except KeyError:
        raise MissingVariable(name) from None
    return value if gen is None else gen(value)  # a filter: {{name | urlencode}}


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        import json

        return json.dumps(v, separators=(",", ":"))
    return str(v)


class Splice:
    """Text made of literal pieces and templates, rendered by one join.

    ``pieces`` are literal strings, ``Template``s, or callables of the variables giving
    text; the templates' literal parts and adjacent literals are merged once, so a
    request head of constant lines and one ``Bearer {{token}}`` is three parts.
    """

    __slots__ = ("parts", "text")

    def __init__(self, pieces: Iterable[str | Template | Callable[[Mapping[str, Any]], str]]) -> None:
        parts: list[Any] = []
        for piece in pieces:
            for p in (piece.parts if isinstance(piece, Template) else [piece]):
                if isinstance(p, str) and parts and isinstance(parts[-1], str):
                    parts[-1] += p
                elif not (isinstance(p, str) and not p):
                    parts.append(p)
        self.parts = parts
        self.text = parts[0] if len(parts) == 1 and isinstance(parts[0], str) else None

    def render(self, variables: Mapping[str, Any]) -> str:
        if self.text is not None:
            return self.text
        out = []
        for p in self.parts:
            cls = p.__class__
            if cls is str:
                out.append(p)
            elif cls is tuple:
                v = _resolve(p, variables)
                out.append(v if v.__class__ is str else _text(v))
            else:
                out.append(p(variables))
        return "".join(out)


class JsonTemplate:
    """A JSON body with templates in its strings (keys included), compiled once."""

    __slots__ = ("tree", "static")

    def __init__(self, value: Any, rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self.static = not references_in(value) and "{{" not in repr(value)
        self.tree = value if self.static else _compile(value, rng)

    def render(self, variables: Mapping[str, Any]) -> Any:
        return self.tree if self.static else _render(self.tree, variables)

    def encoder(self) -> Callable[[Mapping[str, Any]], bytes]:
        """``v -> bytes``: ``msgspec.json.encode(self.render(v))``, with the constant
        parts encoded once and only the templated values per call (the same bytes, the
        generators drawn in the same order). A templated key falls back to the whole."""
        if self.static:
            data = msgspec.json.encode(self.tree)
            return lambda v: data
        parts = _splice(self.tree)
        if parts is None:
            return lambda v: msgspec.json.encode(_render(self.tree, v))
        merged: list[Any] = []
        for p in parts:
            if isinstance(p, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] += p
            else:
                merged.append(p)
        encode = msgspec.json.encode

        def render(v: Mapping[str, Any]) -> bytes:
            return b"".join([p if p.__class__ is bytes else encode(p.value(v)) for p in merged])
        return render


def _compile(value: Any, rng: random.Random) -> Any:
    if isinstance(value, str):
        t = Template(value, rng)
        return value if t.static else t
    if isinstance(value, list):
        return [_compile(v, rng) for v in value]
    if isinstance(value, dict):
        return {(Template(k, rng) if "{{" in k else k): _compile(v, rng) for k, v in value.items()}
    return value


def _splice(tree: Any) -> list[Any] | None:
    """A compiled JSON tree as encoded bytes and ``Template``s (to encode per call), in
    document order; None when a key is templated (keys could collide once rendered)."""
    if isinstance(tree, Template):
        return [tree]
    if not _has_template(tree):
        return [msgspec.json.encode(tree)]
    out: list[Any] = []
    if isinstance(tree, list):
        out.append(b"[")
        for i, v in enumerate(tree):
            sub = _splice(v)
            if sub is None:
                return None
            out += ([b","] if i else []) + sub
        out.append(b"]")
        return out
    out.append(b"{")
    for i, (k, v) in enumerate(tree.items()):
        if not isinstance(k, str):
            return None
        sub = _splice(v)
        if sub is None:
            return None
        out += [(b"," if i else b"") + msgspec.json.encode(k) + b":"] + sub
    out.append(b"}")
    return out


def _has_template(tree: Any) -> bool:
    if isinstance(tree, Template):
        return True
    if isinstance(tree, list):
        return any(_has_template(v) for v in tree)
    if isinstance(tree, dict):
        return any(isinstance(k, Template) or _has_template(v) for k, v in tree.items())
    return False


def _render(tree: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(tree, Template):
        return tree.value(variables)
    if isinstance(tree, list):
        return [_render(v, variables) for v in tree]
    if isinstance(tree, dict):
        return {
            (k.render(variables) if isinstance(k, Template) else k): _render(v, variables)
            for k, v in tree.items()
        }
    return tree
