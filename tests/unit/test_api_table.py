"""The API table (schemas/api.py) is the one list of endpoints: every row has a handler
in the coordinator taking the row's request type, and an endpoint's typed request
encodes to the JSON the NATS CLI docs send. The generator's worker commands are one
tagged union that round-trips."""

from __future__ import annotations

import inspect
import typing

import msgspec
import pytest

from schemas import api, subjects
from schemas.control import RateChange, RunListRequest, RunRef, Segment
from schemas.errors import SurgeError
from services.coordinator.service import Service
from services.generator import workers


def test_every_row_has_a_handler_taking_its_request_type():
    for ep in api.ENDPOINTS:
        handler = Service.handler_of(ep.name)  # Service's, or a class that owns a noun
        params = list(inspect.signature(handler).parameters)
        assert len(params) == 2, ep.name  # self, the typed request
        assert typing.get_type_hints(handler)[params[1]] is ep.request, ep.name


def test_rows_are_unique_and_their_subjects_live_in_subjects_py():
    names = [ep.name for ep in api.ENDPOINTS]
    assert len(set(names)) == len(names)
    assert len(api.BY_SUBJECT) == len(api.ENDPOINTS)
    spelled = {v for k, v in vars(subjects).items() if k.isupper() and isinstance(v, str)}
    assert all(ep.subject in spelled and ep.subject.startswith(subjects.API + ".") for ep in api.ENDPOINTS)


def test_declared_error_codes_exist():
    codes = {cls.code for cls in SurgeError.__subclasses__()} | {SurgeError.code}
    for ep in api.ENDPOINTS:
        assert set(ep.errors) <= codes, ep.name
    assert api.RUN_STOP.may_answer("not_found") and api.RUN_STOP.may_answer("not_leader")
    assert not api.RUN_GET.may_answer("no_generators")


def test_typed_requests_encode_as_the_documented_json():
    assert msgspec.json.decode(msgspec.json.encode(RunRef("r-1"))) == {"run_id": "r-1"}
    assert msgspec.json.decode(msgspec.json.encode(RateChange("r-1", 150.0))) == {"run_id": "r-1", "rate": 150.0}
    assert msgspec.json.decode(msgspec.json.encode(RunListRequest(limit=10)))["limit"] == 10


SEG = [Segment(0.0, 10.0, 100.0, 100.0)]


@pytest.mark.parametrize("cmd", [
    workers.Start(b"{}", 7, 12.5, SEG, 0.5, 0.0, 0.0, skip=3.0),
    workers.Closed(b"{}", 7, 4, 0.25),
    workers.Closed(b"{}", 7, 4, 0.0, 12.5),
    workers.Start(b"{}", 7, 12.5, SEG, 1.0, 0.0, 0.0, index=2, count=3),
    workers.Reassign(1, 2),
    workers.Rebase(SEG, 0.5, 2.0, 200.0),
    workers.Stop(),
    workers.Take(9),
    workers.Drain(10, 1.5),
    workers.Exit(),
])
def test_every_worker_command_round_trips_as_its_own_type(cmd):
    data = msgspec.msgpack.encode(cmd)
    assert workers._command.decode(data) == cmd


def test_an_unknown_worker_command_is_refused():
    with pytest.raises(msgspec.ValidationError):
        workers._command.decode(msgspec.msgpack.encode(["start-everything", 1]))
