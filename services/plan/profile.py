"""Rate profiles: piecewise-linear requests/s over run time. Pure functions.

A profile is a list of ``Segment``s that tile [0, duration) without gaps. The
coordinator builds one from a plan, edits it for live rate changes, and sends it in
every assignment; generators pace from it (``services/generator/pacing.py``).
"""

from __future__ import annotations

from schemas.control import Segment
from schemas.plan import Plan


def from_plan(plan: Plan) -> list[Segment]:
    if plan.users is not None or plan.user_stages:
        # closed model: virtual users, no arrival schedule; the profile carries the
        # run's duration at rate 0 (generators read users from the plan itself)
        spans = [s.duration for s in plan.user_stages or []] or [plan.duration or 0.0]
        segments, t = [], 0.0
        for span in spans:
            segments.append(Segment(t, t + span, 0.0, 0.0))
            t += span
        return segments
    if plan.stages:
        segments: list[Segment] = []
        t, rate = 0.0, plan.start_rate
        for stage in plan.stages:
            segments.append(Segment(t, t + stage.duration, rate, stage.target))
            t, rate = t + stage.duration, stage.target
        return segments
    assert plan.rate is not None and plan.duration is not None  # plans.py guarantees it
    return [Segment(0.0, plan.duration, plan.rate, plan.rate)]


def duration(profile: list[Segment]) -> float:
    return profile[-1].end_s if profile else 0.0


def rate_at(profile: list[Segment], t: float) -> float:
    """Requests/s the profile asks for at ``t`` seconds (0 outside the profile)."""
    for seg in profile:
        if seg.start_s <= t < seg.end_s:
            span = seg.end_s - seg.start_s
            return seg.start_rps + (seg.end_rps - seg.start_rps) * (t - seg.start_s) / span
    return 0.0


def arrivals(profile: list[Segment], t0: float, t1: float) -> float:
    """Expected arrivals in [t0, t1): the integral of the rate."""
    total = 0.0
    for seg in profile:
        a, b = max(t0, seg.start_s), min(t1, seg.end_s)
        if b > a:
            total += (rate_at_segment(seg, a) + rate_at_segment(seg, b)) / 2 * (b - a)
    return total


def rate_at_segment(seg: Segment, t: float) -> float:
    span = seg.end_s - seg.start_s
    return seg.start_rps + (seg.end_rps - seg.start_rps) * (t - seg.start_s) / span


def peak(profile: list[Segment]) -> float:
    return max((max(s.start_rps, s.end_rps) for s in profile), default=0.0)


def mean_rate(profile: list[Segment]) -> float:
    d = duration(profile)
    return arrivals(profile, 0.0, d) / d if d > 0 else 0.0


def hold_rate(profile: list[Segment], at_s: float, rate: float) -> list[Segment]:
    """The profile as it was until ``at_s``, then ``rate`` until the end of the run."""
    end = duration(profile)
    at_s = min(max(at_s, 0.0), end)
    kept = cut(profile, at_s)
    if at_s < end:
        kept.append(Segment(at_s, end, rate, rate))
    return kept


def cut(profile: list[Segment], at_s: float) -> list[Segment]:
    """The profile truncated at ``at_s`` (a stop)."""
    out: list[Segment] = []
    for seg in profile:
        if seg.end_s <= at_s:
            out.append(seg)
        elif seg.start_s < at_s:
            out.append(Segment(seg.start_s, at_s, seg.start_rps, rate_at_segment(seg, at_s)))
    return out


def users_at(plan: Plan, t: float) -> float:
    """Virtual users the whole run asks for at ``t`` seconds (closed model: ``users`` for the
    plan's duration, or ``user_stages`` ramping linearly from 0; 0 outside the run)."""
    if plan.users is not None:
        return float(plan.users) if 0 <= t < (plan.duration or 0) else 0.0
    start, prev = 0.0, 0.0
    for stage in plan.user_stages or []:
        if start <= t < start + stage.duration:
            return prev + (stage.target - prev) * (t - start) / stage.duration
        start, prev = start + stage.duration, stage.target
    return 0.0


def peak_users(plan: Plan) -> int:
    """The most users the whole run asks for at once (``users``, or the highest of
    ``user_stages``' targets, as ``users_at`` counts them); 0 in the open model."""
    if plan.users is not None:
        return plan.users
    return int(max((stage.target for stage in plan.user_stages or []), default=0.0) + 1e-9)


def users_of(plan: Plan, t: float, index: int, count: int, worker: int = 0, workers: int = 1) -> int:
    """The users one engine runs at ``t``: generator ``index`` of ``count``'s part of the
    whole run's (``users_for``), split again among its ``workers`` engine processes the
    same way (``SURGE_WORKERS``), so every part adds up to the plan's number."""
    total = int(users_at(plan, t) + 1e-9)
    return users_for(users_for(total, index, count), worker, workers)


def users_for(total: int, index: int, count: int) -> int:
    """A generator's virtual users of ``total`` (closed model): a deterministic integer
    split by position, so the parts always add up to ``total`` (10 over 3: 3, 3, 4), and
    no part ever falls while ``total`` rises (a ramp up moves no user from one generator
    to another: the last ``total % count`` positions take one more each)."""
    if count <= 1:
        return total
    index = min(max(index, 0), count - 1)
    return total // count + (1 if index >= count - total % count else 0)
