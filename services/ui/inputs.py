"""Everything a browser sends, checked before it reaches the bus. Pure.

Bodies decode into small Structs (``decode``) and plan text is parsed as YAML/JSON
here only to turn it into JSON for the coordinator, which stays the authority on
plans (``plan.validate``). ``line_of`` maps an error's field path (``requests.0.method``)
back to the line of the plan text so the page can show the error next to it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import yaml
from msgspec import Meta, Struct

from schemas.control import RunId
from schemas.errors import BadRequest, InvalidPlan
from services.common.fields import field_of

T = TypeVar("T")
MAX_PLAN_BYTES = 1024 * 1024
RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class PlanText(Struct, frozen=True, forbid_unknown_fields=True):
    """run start / plan validate: the plan as the user typed or uploaded it."""

    plan: Annotated[str, Meta(min_length=1, max_length=MAX_PLAN_BYTES)]


MAX_IMPORT_BYTES = 8 * 1024 * 1024  # a HAR of a real session is often several MB


class ImportBody(Struct, frozen=True, forbid_unknown_fields=True):
    """import: another tool's file (a curl command, a Postman collection, a HAR, a JMX,
    an OpenAPI document) as text, turned into a plan by ``services.plan.importers``."""

    kind: Literal["curl", "postman", "har", "jmx", "openapi"]
    source: Annotated[str, Meta(min_length=1, max_length=MAX_IMPORT_BYTES)]
    name: Annotated[str, Meta(max_length=100)] | None = None
    target: Annotated[str, Meta(max_length=2048)] | None = None  # replaces the origin
    origin: Annotated[str, Meta(max_length=2048)] | None = None  # har: the origin to keep
    environment: Annotated[str, Meta(max_length=MAX_PLAN_BYTES)] | None = None  # postman


GeneratorId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class RateBody(Struct, frozen=True, forbid_unknown_fields=True):
    rate: Annotated[float, Meta(ge=0, le=10_000_000)]
    generator: GeneratorId | None = None  # only this generator's rate (docs/fleet.md)


class GeneratorBody(Struct, frozen=True, forbid_unknown_fields=True):
    """stop (optional: the whole run without it) and start of one generator."""

    generator: GeneratorId | None = None


def generator_id(value: str | None) -> str | None:
    """A ``?generator=`` query value: None when absent or empty, else a checked id."""
    if not value:
        return None
    try:
        return msgspec.convert(value, GeneratorId)
    except msgspec.ValidationError:
        raise BadRequest("not a generator id", "generator") from None


def since(value: str | None) -> int:
    if not value:
        return 0
    if not value.isdigit() or len(value) > 18:
        raise BadRequest("since is a stream sequence number", "since")
    return int(value)


class Login(Struct, frozen=True, forbid_unknown_fields=True):
    token: Annotated[str, Meta(min_length=1, max_length=4096)]


class CompareQuery(Struct, frozen=True):
    runs: Annotated[list[RunId], Meta(min_length=2, max_length=10)]


class Subscribe(Struct, frozen=True, forbid_unknown_fields=True):
    """A WebSocket message from the browser: topics to add and to drop."""

    sub: Annotated[list[Annotated[str, Meta(max_length=80)]], Meta(max_length=32)] = []
    unsub: Annotated[list[Annotated[str, Meta(max_length=80)]], Meta(max_length=32)] = []


def decode(data: bytes, typ: type[T]) -> T:
    """JSON body -> ``typ`` or BadRequest naming the field."""
    if not data.strip():
        raise BadRequest("the request needs a JSON body")
    try:
        return msgspec.json.decode(data, type=typ)
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc), field_of(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"not valid JSON: {exc}") from None


def run_id(value: str) -> str:
    if not RUN_ID_RE.match(value):
        raise BadRequest("not a run id (lowercase letters, digits and -)", "run_id")
    return value


def compare_query(value: str) -> CompareQuery:
    ids = [v for v in (s.strip() for s in value.split(",")) if v]
    if len(ids) < 2:
        raise BadRequest("compare needs two or more run ids: ?runs=a,b", "runs")
    if len(ids) > 10:
        raise BadRequest("compare takes at most 10 runs", "runs")
    for i in ids:
        if not RUN_ID_RE.match(i):
            raise BadRequest(f"not a run id: {i[:80]!r}", "runs")
    if len(set(ids)) != len(ids):
        raise BadRequest("a run appears twice", "runs")
    return CompareQuery(ids)


def plan_object(text: str) -> dict[str, Any]:
    """YAML or JSON text -> the plan as a mapping (not yet validated), or InvalidPlan."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InvalidPlan(f"not YAML or JSON{where}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise InvalidPlan("the plan is nested too deeply") from None
    if not isinstance(raw, dict):
        raise InvalidPlan(f"a plan is a mapping of fields, not {type(raw).__name__}")
    return raw


def yaml_error_line(text: str) -> int | None:
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return mark.line + 1 if mark is not None else None
    except Exception:
        return None
    return None


def line_of(text: str, field: str | None) -> int | None:
    """1-based line of the deepest node of ``field`` (a dotted path) found in the text."""
    if not field:
        return None
    try:
        node = yaml.compose(text)
    except Exception:
        return None
    line = None
    for part in field.split("."):
        if isinstance(node, yaml.MappingNode):
            found = None
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    found = (key, value)
                    break
            if found is None:
                break
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
