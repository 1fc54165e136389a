"""Taking over unfinished runs after a change of leader.

A new leader rebuilds each run from what is durable: the run record (KV
``surge_runs``), the assignments (KV ``surge_assign``) and the run log (stream
``SURGE_RUNLOG``: every interval a leader acknowledged, every run event). Intervals
no leader acknowledged are still in the generators' outboxes and arrive once the
new leader answers on ``surge.stats.>``; the aggregate counts each (generator,
seq) once, so nothing is counted twice or lost.

The rebuilding itself is ``Run.recover`` (runs.py): it replays the run log through the
``RunStore``, reconciles the assignments and notes the takeover as a gap.
"""

from __future__ import annotations

from schemas.control import Lease
from services.coordinator.config import Config
from services.coordinator.runs import Fleet, Run
from services.coordinator.store import RunStore


async def recover_runs(
    store: RunStore, fleet: Fleet, config: Config, previous: Lease | None, by: str
) -> list[Run]:
    """Every unfinished run, or an exception: the caller retries the whole recovery
    (NATS trouble is the only way to fail here; bad entries are skipped inside)."""
    return [
        await Run.recover(record, store=store, fleet=fleet, config=config, previous=previous, by=by)
        for record in await store.unfinished_records()
    ]
