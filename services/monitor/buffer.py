"""Points waiting for InfluxDB: a bounded memory queue that spills to a file, exactly once.

The writer takes one ``Batch`` at a time (``take``), writes it, then ``commit``s it
(removed for good) or ``release``s it (kept, retried later). Points leave the buffer
only on commit, so a failed or timed-out write loses nothing, and a point is handed
out again only after its batch was released, so a successful write is never repeated.

When the memory queue exceeds its bound its points are appended to ``spill.lp`` under
the data dir (one line-protocol point per line). The spill file is older than memory
and drains first; how far it has been written is kept in ``spill.offset``, so a monitor
restarted in the middle of an outage picks up where it stopped. ``close()`` spills
whatever is still in memory. Beyond ``max_spill_bytes`` new points are dropped and
counted: the disk is not filled.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from msgspec import Struct


class Batch(Struct, frozen=True):
    lines: list[str]
    source: str  # "file" or "memory"
    end_offset: int = 0  # for "file": where the file's unwritten part starts after commit


class PointBuffer:
    def __init__(self, directory: Path | str, max_memory: int, max_spill_bytes: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spill_path = self.dir / "spill.lp"
        self.offset_path = self.dir / "spill.offset"
        self.max_memory = max(1, max_memory)
        self.max_spill_bytes = max_spill_bytes
        self.memory: deque[str] = deque()
        self.inflight: Batch | None = None
        self.dropped = 0
        self.offset = 0
        self.spilled = 0  # lines in the file past ``offset``
        self._recover()

    # --- state ------------------------------------------------------------------
    def __len__(self) -> int:
        """Points not yet written: memory, the spill file and the batch in flight."""
        flying = len(self.inflight.lines) if self.inflight and self.inflight.source == "memory" else 0
        return len(self.memory) + self.spilled + flying

    def _recover(self) -> None:
        if not self.spill_path.exists():
            self._reset_file()
            return
        try:
            self.offset = int(self.offset_path.read_text() or 0)
        except (OSError, ValueError):
            self.offset = 0  # no record of progress: write it all again (same timestamps)
        with open(self.spill_path, "rb") as f:
            f.seek(self.offset)
            self.spilled = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        if self.spilled == 0:
            self._reset_file()

    def _reset_file(self) -> None:
        for path in (self.spill_path, self.offset_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self.offset = 0
        self.spilled = 0

    # --- in ---------------------------------------------------------------------
    def add(self, lines: Iterable[str]) -> None:
        self.memory.extend(lines)
        if len(self.memory) > self.max_memory:
            self.spill()

    def spill(self) -> None:
        """Move every point in memory to the end of the spill file."""
        if not self.memory:
            return
        data = "".join(f"{line}\n" for line in self.memory).encode()
        size = self.spill_path.stat().st_size if self.spill_path.exists() else 0
        if size + len(data) > self.max_spill_bytes:
            self.dropped += len(self.memory)
            self.memory.clear()
            return
        with open(self.spill_path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.spilled += len(self.memory)
        self.memory.clear()

    # --- out --------------------------------------------------------------------
    def take(self, limit: int) -> Batch | None:
        """The next batch to write (oldest first), or None when empty or one is in flight."""
        if self.inflight is not None:
            return None
        if self.spilled:
            lines, end = self._read_file(limit)
            if lines:
                self.inflight = Batch(lines, "file", end)
                return self.inflight
        if self.memory:
            lines = [self.memory.popleft() for _ in range(min(limit, len(self.memory)))]
            self.inflight = Batch(lines, "memory")
            return self.inflight
        return None

    def _read_file(self, limit: int) -> tuple[list[str], int]:
        lines: list[str] = []
        with open(self.spill_path, "rb") as f:
            f.seek(self.offset)
            end = self.offset
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a torn last line (crash while spilling): not ours to send
                lines.append(raw[:-1].decode())
                end += len(raw)
                if len(lines) >= limit:
                    break
        return lines, end

    def commit(self, batch: Batch) -> None:
        """The batch was written: forget it."""
        assert batch is self.inflight
        self.inflight = None
        if batch.source == "file":
            self.offset = batch.end_offset
            self.spilled -= len(batch.lines)
            if self.spilled <= 0:
                self._reset_file()
            else:
                tmp = self.offset_path.with_suffix(".tmp")
                tmp.write_text(str(self.offset))
                tmp.replace(self.offset_path)

    def release(self, batch: Batch) -> None:
        """The write failed: keep the batch for the next attempt."""
        assert batch is self.inflight
        self.inflight = None
        if batch.source == "memory":
            self.memory.extendleft(reversed(batch.lines))

    def close(self) -> None:
        """Keep what was not written on disk for the next start."""
        if self.inflight is not None:
            self.release(self.inflight)
        self.spill()
