"""bench/rounds.py and bench/ab.py: side-by-side figures come from alternating runs, judged by their spread."""

from __future__ import annotations

import pytest

from bench.rounds import alternate, per_round_ratios, summary

pytestmark = pytest.mark.timeout(10)


def _attempt(into: dict, key: str, fn) -> dict:
    try:
        into[key] = fn()
    except Exception as exc:  # as bench.__main__.attempt: reported, never raised
        into[key] = {"error": f"{type(exc).__name__}: {exc}"}
    return into[key]


def test_sides_run_in_turn_round_after_round():
    order: list[str] = []

    def side(name: str):
        def run() -> dict:
            order.append(name)
            return {"rps": float(len(order))}
        return run

    out = alternate(3, [("wrk", side("wrk")), ("surge", side("surge"))], _attempt)
    assert order == ["wrk", "surge"] * 3
    assert [r["rps"] for r in out["wrk"]] == [1.0, 3.0, 5.0]
    assert [r["rps"] for r in out["surge"]] == [2.0, 4.0, 6.0]


def test_a_slow_round_moves_the_median_not_the_ratio():
    wrk = [{"rps": 100.0, "requests": 300}, {"rps": 60.0, "requests": 180}, {"rps": 104.0, "requests": 312}]
    surge = [{"rps": 98.0, "requests": 294}, {"rps": 58.0, "requests": 174}, {"rps": 101.0, "requests": 303}]
    w, s = summary(wrk), summary(surge)
    assert w["rps"] == 100.0 and s["rps"] == 98.0  # the slow minute's round is outvoted
    assert w["requests"] == 792  # counts add up
    assert w["rounds"] == wrk
    assert per_round_ratios(surge, wrk, "rps") == [0.98, 0.967, 0.971]


def test_failed_rounds_are_left_out_and_counted():
    rounds = [{"rps": 10.0, "per_second": [9, 11], "errors": {"reset": 1}, "mode": "closed"},
              {"error": "RuntimeError: wrk exited 1"},
              {"rps": 30.0, "per_second": [29], "errors": {"reset": 2, "timeout": 1}, "mode": "closed"}]
    s = summary(rounds)
    assert s["rps"] == 20.0 and s["rounds_failed"] == 1
    assert s["per_second"] == [9, 11, 29]  # second by second, round after round
    assert s["errors"] == {"reset": 3, "timeout": 1} and s["mode"] == "closed"
    assert per_round_ratios(rounds, rounds, "rps") == [1.0, None, 1.0]
    assert summary([{"error": "a"}, {"error": "b"}]) == {"error": "b", "rounds": [{"error": "a"}, {"error": "b"}]}


def test_pairs_say_within_the_noise_unless_the_mean_difference_is_twice_its_error():
    from bench.ab import pairs_summary

    noisy = pairs_summary([13.2, 12.3, 12.5, 12.8], [14.4, 13.7, 11.5, 12.4])
    assert noisy["pairs"] == 4 and noisy["b_lower"] == 2 and not noisy["beyond_noise"]
    assert noisy["a_range"] == [12.3, 13.2] and noisy["diff_range"] == [pytest.approx(-1.0), pytest.approx(1.4)]
    clear = pairs_summary([0.52, 0.55, 0.53, 0.53], [0.36, 0.37, 0.36, 0.47])
    assert clear["b_lower"] == 4 and clear["beyond_noise"]
    assert clear["diff_mean"] == pytest.approx(-0.1425)
    assert not pairs_summary([1.0, 1.0], [2.0, 2.0])["beyond_noise"]  # two pairs: no error to judge by
