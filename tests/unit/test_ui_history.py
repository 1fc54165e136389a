"""services/ui/history.py and the late joiner's backlog: compact, aligned, with gaps."""

from __future__ import annotations

import json

import msgspec

from schemas.host import Alert
from schemas.stats import LiveGenerator, LiveRequest, LiveSnapshot
from services.ui import state
from services.ui.history import history_of


def gen(rps: float, lost: bool = False, behind: bool = False) -> LiveGenerator:
    return LiveGenerator(target_rps=50, rps=0 if lost else rps, sent=int(rps), late=0, dropped=0,
                         p99_ms=None if lost else 9.5, behind=behind, lost=lost)


def snap(seq: int, gens: dict[str, LiveGenerator], events: list[str] | None = None,
         run_id: str = "r1") -> LiveSnapshot:
    return LiveSnapshot(
        run_id=run_id, plan_name="p", state="running", seq=seq, at=1000.0 + seq, elapsed_s=seq + 1.0,
        duration_s=60, target_rps=100, rps=99.5, requests=99, errors=1, error_rate=0.01, late=0,
        dropped=0, in_flight=2, p50_ms=1.23456, p90_ms=2.0, p99_ms=3.0, max_ms=4.0,
        total_requests=100 * (seq + 1), total_errors=seq,
        per_request={"home": LiveRequest(rps=99.5, errors=1, p50_ms=1.0, p90_ms=2.0, p99_ms=3.0)},
        generators=gens, events=events or [],
    )


def test_a_lost_generator_is_a_gap_in_its_column_and_a_marked_second() -> None:
    snaps = [snap(0, {"a": gen(50), "b": gen(50)}),
             snap(1, {"a": gen(50, behind=True), "b": gen(49)}),
             snap(2, {"a": gen(100)}),  # b silent: a gap, not yet declared lost
             snap(3, {"a": gen(100), "b": gen(0, lost=True)}, ["generator b lost"]),
             snap(4, {"a": gen(100), "b": gen(0, lost=True), "c": gen(10)})]  # c joins late
    data = json.loads(history_of(snaps).frame_data())
    assert data["seq"] == [0, 1, 2, 3, 4]
    assert data["gen"] == {"a": [50, 50, 100, 100, 100], "b": [50, 49, None, None, None],
                           "c": [None, None, None, None, 10]}
    assert data["lost"] == {"b": 3} and data["gaps"] == [3]
    assert data["behind"] == {"a": [1]}
    assert data["events"] == [[3, "generator b lost"]]
    assert data["cols"]["p50_ms"][0] == 1.23 and data["req"]["home"] == [3.0] * 5
    assert data["last"]["seq"] == 4 and data["last"]["generators"]["b"]["lost"] is True


def test_a_repeated_second_replaces_the_newest_and_old_ones_are_ignored() -> None:
    h = history_of([snap(0, {"a": gen(1)}), snap(1, {"a": gen(2)}, ["x"])])
    h.add(snap(1, {"a": gen(3)}), "{}")
    h.add(snap(0, {"a": gen(9)}), "{}")
    data = json.loads(h.frame_data())
    assert data["seq"] == [0, 1] and data["gen"]["a"] == [1, 3] and data["events"] == []


def test_history_is_bounded_and_far_smaller_than_the_snapshots() -> None:
    gens = {f"gen-{i:02d}-abcdef": gen(40.0 + i) for i in range(50)}
    snaps = [snap(s, gens) for s in range(700)]
    raw = sum(len(msgspec.json.encode(s)) for s in snaps[-600:])
    h = history_of(snaps, maxlen=600)
    data = h.frame_data()
    assert len(h) == 600 and json.loads(data)["seq"][0] == 100
    assert all(len(c) == 600 for c in json.loads(data)["gen"].values())
    assert len(data) < raw / 10, (len(data), raw)


def test_backlog_of_live_is_the_history_frame_and_runs_are_bounded() -> None:
    st = state.State(history=5, runs_kept=2)
    for run in ("r1", "r2", "r3"):
        for seq in range(7):
            s = snap(seq, {"a": gen(1)}, run_id=run)
            st.on_live(s, msgspec.json.encode(s))
    assert list(st.runs) == ["r2", "r3"]
    frame = json.loads(st.backlog(state.live_topic("r3"))[0])
    assert frame["t"] == "live-history" and frame["k"] == "r3" and frame["d"]["seq"] == [2, 3, 4, 5, 6]
    assert json.loads(st.backlog(state.live_topic("nope"))[0])["d"]["seq"] == []


def test_backlog_of_alerts_keeps_a_firing_alert_older_than_the_recent_ones() -> None:
    st = state.State(alerts_kept=3)

    def alert(host: str, s: str) -> None:
        a = Alert(host=host, ts=1.0, name="cpu_high", metric="cpu_pct", value=97, threshold=90,
                  state=s, message="CPU 97% > 90%")
        st.on_alert(a, msgspec.json.encode(a))

    alert("old", "firing")
    for i in range(3):
        alert(f"h{i}", "firing")
        alert(f"h{i}", "resolved")
    replay: dict[str, str] = {}
    for a in json.loads(st.backlog(state.ALERTS)[0])["d"]:
        replay[a["host"]] = a["state"]
    assert {h for h, s in replay.items() if s == "firing"} == {"old"}
