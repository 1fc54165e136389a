"""Writes the static part of the fuzz corpus (tests/fuzz/corpus/). Run it again to
regenerate; the files are kept in the repository so failures are reproducible.

``@RUN@`` and ``@GEN@`` are replaced at replay time with a running run's id and one
of its generators, so that hostile intervals aim at a live run.
"""

from __future__ import annotations

import json
from pathlib import Path

from hdrh.histogram import HdrHistogram

from services.common import histogram

HERE = Path(__file__).parent / "corpus"


def interval(**over) -> dict:
    # seq 13: inside the replay's 14-second run, but a second the real generator has not
    # reached yet; an earlier one may already be counted, and a duplicate is acked
    # without being read, which would hide what the coordinator does with the garbage.
    base = {
        "run_id": "@RUN@", "generator_id": "@GEN@", "epoch": 1, "seq": 13, "target": 10.0,
        "sent": 10, "in_flight": 0,
        "requests": {"home": {"count": 10, "errors": {}, "late": 0, "dropped": 0,
                              "latency": "", "service": ""}},
    }
    base.update(over)
    return base


def main() -> None:
    HERE.mkdir(exist_ok=True)
    good = histogram.new()
    for v in range(1, 1000):
        good.record_value(v)
    good_text = histogram.encode(good)  # 999 values
    other = HdrHistogram(1, 1000, 2)
    other.record_value(5)
    other_text = other.encode().decode()
    plan = {"name": "f", "target": "http://127.0.0.1:9", "rate": 10, "duration": "2s",
            "requests": [{"name": "a", "path": "/"}]}
    cases: dict[str, bytes] = {
        "truncated-plan.json": json.dumps(plan).encode()[:41],
        "truncated-interval.json": json.dumps(interval()).encode()[:90],
        "truncated-utf8.json": '{"name": "naïve'.encode()[:-1],
        "empty.bin": b"",
        "null.json": b"null",
        "array.json": b"[]",
        "string.json": b'"text"',
        "number.json": b"42",
        "wrong-type-run-id.json": b'{"run_id": 12}',
        "wrong-type-run-id-list.json": b'{"run_id": ["a"]}',
        "wrong-type-rate.json": json.dumps({**plan, "rate": "fast"}).encode(),
        "wrong-type-requests.json": json.dumps({**plan, "requests": {"a": 1}}).encode(),
        "wrong-type-interval-seq.json": json.dumps(interval(seq="one")).encode(),
        "wrong-type-heartbeat.json": json.dumps({"id": 5, "host": None}).encode(),
        "path-traversal-run-id.json": b'{"run_id": "../../etc/passwd"}',
        "huge-rate.json": json.dumps({**plan, "rate": 1e300}).encode(),
        "huge-float-overflow.json": b'{"run_id": "x", "rate": 1e309}',
        "huge-int.json": b'{"run_id": "x", "limit": 99999999999999999999999999999}',
        "huge-interval-count.json": json.dumps(interval(
            requests={"home": {"count": 10**15, "errors": {}, "latency": "", "service": ""}}
        )).encode(),
        "huge-interval-seq.json": json.dumps(interval(seq=10**12)).encode(),
        "negative-rate-plan.json": json.dumps({**plan, "rate": -5}).encode(),
        "negative-rate-change.json": b'{"run_id": "@RUN@", "rate": -100}',
        "negative-stage.json": json.dumps({**{k: v for k, v in plan.items() if k != "rate"},
                                           "duration": None,
                                           "stages": [{"duration": "1s", "target": -10}]}).encode(),
        "negative-interval-count.json": json.dumps(interval(
            requests={"home": {"count": -500, "errors": {}, "latency": "", "service": ""}}
        )).encode(),
        "negative-interval-errors.json": json.dumps(interval(
            requests={"home": {"count": 5, "errors": {"status": -5}, "latency": "", "service": ""}}
        )).encode(),
        "negative-heartbeat-capacity.json": json.dumps({
            "id": "fuzz-gen", "host": "h", "pid": 1, "cores": 1, "version": "x",
            "started_at": 0, "sent_at": 0, "capacity_rps": -1e9}).encode(),
        "negative-assignment-share.json": json.dumps({
            "run_id": "fuzz-run", "epoch": 1, "share": -1, "start_at": 0, "end_at": 1e12,
            "profile": [{"start_s": 0, "end_s": 1e9, "start_rps": -5, "end_rps": -5}],
            "plan": plan}).encode(),
        "assignment-missing-plan.json": json.dumps({
            "run_id": "fuzz-run", "epoch": 1, "share": 1, "start_at": 0, "end_at": 1e12,
            "profile": []}).encode(),
        "histogram-not-base64.json": json.dumps(interval(
            requests={"home": {"count": 10, "latency": "!!!not base64!!!", "service": ""}}
        )).encode(),
        "histogram-garbage-base64.json": json.dumps(interval(
            requests={"home": {"count": 10, "latency": "SGVsbG8gd29ybGQ=", "service": ""}}
        )).encode(),
        "histogram-other-shape.json": json.dumps(interval(
            requests={"home": {"count": 10, "latency": other_text, "service": ""}}
        )).encode(),
        "histogram-more-values-than-count.json": json.dumps(interval(
            requests={"home": {"count": 10, "latency": good_text, "service": good_text}}
        )).encode(),
        "histogram-wrong-type.json": json.dumps(interval(
            requests={"home": {"count": 10, "latency": [1, 2, 3], "service": ""}}
        )).encode(),
        "stranger-interval.json": json.dumps(interval(generator_id="intruder")).encode(),
        "other-run-interval.json": json.dumps(interval(run_id="someone-else")).encode(),
        "live-wrong-shape.json": b'{"run_id": "@RUN@", "seq": "x", "generators": 7}',
        "invalid-utf8.bin": b"\xff\xfe\x00garbage\xc3\x28",
        "invalid-utf8-in-string.json": b'{"run_id": "\xc3\x28\xa0\xa1"}',
        "nul-bytes.bin": b"\x00" * 64,
        "duplicate-keys.json": b'{"run_id": "@RUN@", "run_id": 5}',
        "unknown-fields.json": b'{"run_id": "@RUN@", "extra": {"deep": [1, 2, 3]}}',
    }
    for name, data in cases.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(cases)} files to {HERE}")


if __name__ == "__main__":
    main()
