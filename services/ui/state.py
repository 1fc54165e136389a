"""What the UI remembers of the bus so a browser opening late sees the recent past.

Pure, no I/O. Forwards the raw JSON of each message (encoded once by its publisher) and
keeps bounded memories of it: the last seconds of the last few runs as compact columns
(``history.RunHistory``), the last samples of every host, the alerts firing and the
recent ones, and the live generator registry. ``frame()``
builds the text a WebSocket sends; ``backlog()`` what a new subscriber gets first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

import msgspec

from schemas.control import Heartbeat
from schemas.host import Alert, HostSample
from schemas.stats import LiveSnapshot
from services.ui.history import RunHistory

RUNS = "runs"
HOSTS = "hosts"
ALERTS = "alerts"
GENERATORS = "generators"
LIVE_PREFIX = "live:"
STATIC_TOPICS = frozenset({RUNS, HOSTS, ALERTS, GENERATORS})


def live_topic(run_id: str) -> str:
    return LIVE_PREFIX + run_id


def frame(topic: str, data: str | bytes, kind: str | None = None, key: str | None = None) -> str:
    """``{"t": kind, "k": key, "d": <data>}`` with ``data`` spliced in without re-encoding."""
    raw = data.decode() if isinstance(data, bytes) else data
    head = msgspec.json.encode({"t": kind or topic, "k": key}).decode()
    return head[:-1] + ',"d":' + raw + "}"


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The few numbers of a live run the runs list shows, sent on topic ``runs``."""

    run_id: str
    plan_name: str
    state: str
    seq: int
    elapsed_s: float
    duration_s: float
    target_rps: float
    rps: float
    p99_ms: float | None
    error_rate: float
    total_requests: int
    total_errors: int
    generators: int
    behind: int
    final: bool


def summarize(snap: LiveSnapshot) -> RunSummary:
    return RunSummary(
        run_id=snap.run_id, plan_name=snap.plan_name, state=snap.state, seq=snap.seq,
        elapsed_s=snap.elapsed_s, duration_s=snap.duration_s, target_rps=snap.target_rps,
        rps=snap.rps, p99_ms=snap.p99_ms, error_rate=snap.error_rate,
        total_requests=snap.total_requests, total_errors=snap.total_errors,
        generators=len(snap.generators),
        behind=sum(1 for g in snap.generators.values() if g.behind or g.lost),
        final=snap.final,
    )


class State:
    def __init__(self, history: int = 600, runs_kept: int = 10, host_history: int = 120,
                 max_hosts: int = 500, alerts_kept: int = 100) -> None:
        self.history = history
        self.runs_kept = runs_kept
        self.host_history = host_history
        self.max_hosts = max_hosts
        self.runs: OrderedDict[str, RunHistory] = OrderedDict()
        self.summaries: dict[str, str] = {}
        self.hosts: OrderedDict[str, deque[str]] = OrderedDict()
        self.alerts: deque[str] = deque(maxlen=alerts_kept)
        self.firing: dict[tuple[str, str], str] = {}
        self.generators: dict[str, tuple[float, str]] = {}  # id -> (sent_at, raw)
        self.generator_forget_s = 30.0  # the bucket's TTL expires keys without a delete

    # --- updates: each returns the frames to publish as (topic, frame) ------------
    def on_live(self, snap: LiveSnapshot, raw: bytes) -> list[tuple[str, str]]:
        text = raw.decode()
        history = self.runs.get(snap.run_id)
        if history is None:
            history = self.runs[snap.run_id] = RunHistory(snap.run_id, self.history)
            while len(self.runs) > self.runs_kept:
                old, _ = self.runs.popitem(last=False)
                self.summaries.pop(old, None)
        else:
            self.runs.move_to_end(snap.run_id)
        history.add(snap, text)
        summary = msgspec.json.encode(summarize(snap)).decode()
        self.summaries[snap.run_id] = summary
        return [
            (live_topic(snap.run_id), frame("live", text, key=snap.run_id)),
            (RUNS, frame(RUNS, summary, kind="run", key=snap.run_id)),
        ]

    def on_host(self, sample: HostSample, raw: bytes) -> list[tuple[str, str]]:
        text = raw.decode()
        ring = self.hosts.get(sample.host)
        if ring is None:
            if len(self.hosts) >= self.max_hosts:
                self.hosts.popitem(last=False)
            ring = self.hosts[sample.host] = deque(maxlen=self.host_history)
        ring.append(text)
        return [(HOSTS, frame(HOSTS, text, kind="host", key=sample.host))]

    def on_alert(self, alert: Alert, raw: bytes) -> list[tuple[str, str]]:
        text = raw.decode()
        self.alerts.append(text)
        if alert.state == "firing":
            self.firing[(alert.host, alert.name)] = text
        else:
            self.firing.pop((alert.host, alert.name), None)
        return [(ALERTS, frame(ALERTS, text, kind="alert", key=alert.host))]

    def on_generator(self, gid: str, beat: Heartbeat | None, raw: bytes | None) -> list[tuple[str, str]]:
        if beat is None or raw is None:
            self.generators.pop(gid, None)
            return [(GENERATORS, frame(GENERATORS, "null", kind="generator", key=gid))]
        text = raw.decode()
        self.generators[gid] = (beat.sent_at, text)
        return [(GENERATORS, frame(GENERATORS, text, kind="generator", key=gid))]

    # --- what a new subscriber gets first ----------------------------------------
    def backlog(self, topic: str, now: float | None = None) -> list[str]:
        if topic.startswith(LIVE_PREFIX):
            run_id = topic[len(LIVE_PREFIX):]
            history = self.runs.get(run_id) or RunHistory(run_id, self.history)
            return [frame(topic, history.frame_data(), kind="live-history", key=run_id)]
        if topic == RUNS:
            data = "[" + ",".join(self.summaries.values()) + "]"
            return [frame(topic, data, kind="runs")]
        if topic == HOSTS:
            data = "{" + ",".join(
                msgspec.json.encode(h).decode() + ":[" + ",".join(ring) + "]"
                for h, ring in self.hosts.items()
            ) + "}"
            return [frame(topic, data, kind="hosts")]
        if topic == ALERTS:
            # firing alerts older than the recent ones come first, so that replaying
            # the list in order leaves exactly the firing ones firing
            recent = set(self.alerts)
            data = "[" + ",".join([a for a in self.firing.values() if a not in recent] + list(self.alerts)) + "]"
            return [frame(topic, data, kind="alerts")]
        if topic == GENERATORS:
            now = time.time() if now is None else now
            for gid in [g for g, (at, _) in self.generators.items() if now - at > self.generator_forget_s]:
                del self.generators[gid]
            data = "{" + ",".join(
                msgspec.json.encode(g).decode() + ":" + raw for g, (_, raw) in self.generators.items()
            ) + "}"
            return [frame(topic, data, kind="generators")]
        return []
