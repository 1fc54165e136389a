"""Reading generators' log lines for a run from the SURGE_LOGS stream (CLI and UI).

The lines are in JetStream, kept for the stream's retention (days) whatever the
generators do, so ``surge logs`` works long after the run, and ``--follow`` picks
up new lines as the generators ship them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec
from nats.js import api as js_api
from nats.js.client import JetStreamContext

from schemas import subjects
from schemas.logs import LogLine

_decoder = msgspec.json.Decoder(LogLine)


async def stored(js: JetStreamContext, run_id: str, generator: str | None = None) -> int:
    """How many lines the stream holds for the run (and generator)."""
    subject = subjects.logs(run_id, generator or "*")
    try:
        info = await js.stream_info(subjects.LOGS_STREAM, subjects_filter=subject)
    except Exception:  # no stream yet: no coordinator has run here
        return 0
    return sum((info.state.subjects or {}).values())


async def read(
    js: JetStreamContext, run_id: str, generator: str | None = None, *,
    follow: asyncio.Event | None = None, idle_s: float = 1.0,
) -> AsyncIterator[LogLine]:
    """Every stored line, oldest first; with ``follow``, new ones too until it is set
    (and then whatever came meanwhile: no line shipped before that is left out)."""
    if follow is None and not await stored(js, run_id, generator):
        return
    sub = await js.subscribe(
        subjects.logs(run_id, generator or "*"), ordered_consumer=True,
        deliver_policy=js_api.DeliverPolicy.ALL, inactive_threshold=30.0,
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except asyncio.TimeoutError:
                if follow is None or follow.is_set():
                    return
                continue
            try:
                line = _decoder.decode(msg.data)
            except msgspec.DecodeError:
                continue
            yield line
            pending = msg.metadata.num_pending if msg.metadata else 0
            if pending == 0 and (follow is None or follow.is_set()):
                return
    finally:
        await sub.unsubscribe()


async def after(
    js: JetStreamContext, run_id: str, generator: str | None, since_seq: int, limit: int = 1000,
) -> list[tuple[int, LogLine]]:
    """Lines stored after stream sequence ``since_seq`` (at most ``limit``), each with its
    sequence, so a page can ask again for only what is new."""
    try:
        state = (await js.stream_info(subjects.LOGS_STREAM)).state
    except Exception:  # no stream yet
        return []
    if state.last_seq <= since_seq:
        return []
    config = js_api.ConsumerConfig(
        deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=since_seq + 1,
    ) if since_seq else None
    sub = await js.subscribe(
        subjects.logs(run_id, generator or "*"), ordered_consumer=True, config=config,
        deliver_policy=None if since_seq else js_api.DeliverPolicy.ALL, inactive_threshold=30.0,
    )
    out: list[tuple[int, LogLine]] = []
    try:
        while len(out) < limit:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except asyncio.TimeoutError:
                break
            meta = msg.metadata
            try:
                out.append((meta.sequence.stream, _decoder.decode(msg.data)))
            except msgspec.DecodeError:
                pass
            if meta.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out


async def last_trouble(js: JetStreamContext, run_id: str, generator: str, back: int = 500) -> LogLine | None:
    """The newest warning or error among a generator's last lines for the run (at most
    ``back`` stream messages back): why a generator that was lost may have died."""
    subject = subjects.logs(run_id, generator)
    try:
        last = await js.get_last_msg(subjects.LOGS_STREAM, subject)
    except Exception:  # it shipped nothing for this run
        return None
    config = js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                                   opt_start_seq=max(last.seq - back, 1))
    sub = await js.subscribe(subject, ordered_consumer=True, config=config, inactive_threshold=10.0)
    found: LogLine | None = None
    try:
        while True:
            msg = await sub.next_msg(timeout=0.5)
            try:
                line = _decoder.decode(msg.data)
            except msgspec.DecodeError:
                continue
            if line.level != "info":
                found = line
            if msg.metadata.sequence.stream >= last.seq:
                return found
    except asyncio.TimeoutError:
        return found
    finally:
        await sub.unsubscribe()


def text(line: LogLine) -> str:
    """``2026-11-30T10:15:03.120Z gen-1 warning second 3: 12 errors (connect 12)``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(line.at)) + f".{int(line.at % 1 * 1000):03d}Z"
    return f"{stamp} {line.generator_id} {line.level:<7} {line.message}"
