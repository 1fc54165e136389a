"""A generator's run log: the per-second budget and how a line reads."""

from __future__ import annotations

import msgspec
from structlog.testing import capture_logs

from schemas.logs import LogLine
from schemas.stats import IntervalStats, RequestInterval
from services.generator.runlog import LogBudget, RunLog, log_second, message_of


def test_info_lines_are_bounded_per_second_and_warnings_always_pass():
    now = [100.2]
    budget = LogBudget(2, clock=lambda: now[0])
    assert [budget.admit("info")[0] for _ in range(4)] == [True, True, False, False]
    assert budget.admit("warning") == (True, 0) and budget.admit("error") == (True, 0)
    now[0] = 101.0
    assert budget.admit("info") == (True, 2)  # the next second says what was held back
    assert budget.admit("info") == (True, 0)


def test_the_tap_ships_the_current_runs_lines_at_info_and_above():
    sent: list[tuple[str, bytes]] = []
    tap = RunLog("gen-1", 10, lambda subject, data: sent.append((subject, data)))
    tap("info", {"event": "no run yet"})
    tap.run_id = "r-1"
    tap("debug", {"event": "too chatty"})
    tap("info", {"event": "run assigned", "share": 0.5, "run_id": "r-1", "service": "generator"})
    tap("error", {"event": "run failed", "exception": "Traceback...\nRuntimeError: boom"})
    lines = [msgspec.json.decode(d, type=LogLine) for _, d in sent]
    assert [s for s, _ in sent] == ["surge.logs.r-1.gen-1"] * 2
    assert [(x.level, x.message) for x in lines] == [
        ("info", "run assigned share=0.5"), ("error", "run failed | RuntimeError: boom")]
    assert message_of({"event": "x", "timestamp": "t", "level": "info"}) == "x"


def test_a_second_logs_its_trouble_at_once_and_its_progress_every_ten_seconds():
    def second(seq: int, **request) -> IntervalStats:
        r = msgspec.convert({"count": 5, **request}, RequestInterval) if request else None
        return IntervalStats(run_id="r-1", generator_id="g", epoch=1, seq=seq, target=5.0, sent=5,
                             in_flight=0, requests={"home": r} if r else {})

    with capture_logs() as logged:
        log_second(second(3))  # a quiet second in between: nothing
        log_second(second(10))
        log_second(second(11, errors={"timeout": 2, "refused": 1}, late=4))
    assert [(e["log_level"], e["event"]) for e in logged] == [
        ("info", "second 10: sent 5 of 5 due, 0 completed, 0 in flight"),
        ("warning", "second 11: 3 errors (refused 1, timeout 2)"),
        ("warning", "second 11: behind its schedule, 4 late, 0 dropped"),
    ]
    with capture_logs() as logged:  # a closed model's second: its users' requests, nothing due
        log_second(msgspec.structs.replace(second(20), target=0.0), closed=True)
    assert [e["event"] for e in logged] == ["second 20: sent 5, 0 completed, 0 in flight"]
