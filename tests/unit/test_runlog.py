"""A generator's run log: the per-second budget and how a line reads."""

from __future__ import annotations

import msgspec

from schemas.logs import LogLine
from services.generator.runlog import LogBudget, RunLog, message_of


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
