"""services.monitor.buffer: bounded memory, spill file, exactly-once hand-out, restart."""

from __future__ import annotations

from services.monitor.buffer import PointBuffer


def pts(start: int, n: int) -> list[str]:
    return [f"m v={i}i {i}" for i in range(start, start + n)]


def drain(buf: PointBuffer, limit: int = 3) -> list[str]:
    out = []
    while (batch := buf.take(limit)) is not None:
        out.extend(batch.lines)
        buf.commit(batch)
    return out


def test_memory_only_batches_in_order(tmp_path):
    buf = PointBuffer(tmp_path, max_memory=100, max_spill_bytes=1 << 20)
    buf.add(pts(0, 7))
    assert len(buf) == 7 and buf.spilled == 0
    assert drain(buf) == pts(0, 7)
    assert len(buf) == 0 and not buf.spill_path.exists()


def test_over_the_bound_points_spill_and_drain_oldest_first(tmp_path):
    buf = PointBuffer(tmp_path, max_memory=4, max_spill_bytes=1 << 20)
    buf.add(pts(0, 3))
    buf.add(pts(3, 3))  # 6 > 4: all six go to the file
    assert buf.spilled == 6 and len(buf.memory) == 0 and buf.spill_path.exists()
    buf.add(pts(6, 2))
    assert len(buf) == 8
    assert drain(buf, limit=4) == pts(0, 8)
    assert len(buf) == 0 and not buf.spill_path.exists() and not buf.offset_path.exists()


def test_a_released_batch_comes_back_and_a_committed_one_never(tmp_path):
    buf = PointBuffer(tmp_path, max_memory=3, max_spill_bytes=1 << 20)
    buf.add(pts(0, 5))  # spilled
    buf.add(pts(5, 2))  # memory
    first = buf.take(2)
    assert first.lines == pts(0, 2) and buf.take(2) is None  # one batch in flight at a time
    buf.release(first)
    again = buf.take(2)
    assert again.lines == pts(0, 2)
    buf.commit(again)
    mem = None
    rest = []
    while (batch := buf.take(2)) is not None:
        if batch.source == "memory" and mem is None:
            mem = batch
            buf.add(pts(7, 4))  # spills while a memory batch is in flight
            buf.release(batch)
            continue
        rest.extend(batch.lines)
        buf.commit(batch)
    assert sorted(rest, key=lambda s: int(s.split()[-1])) == pts(2, 9)
    assert len(buf) == 0


def test_spilled_progress_survives_a_restart(tmp_path):
    buf = PointBuffer(tmp_path, max_memory=2, max_spill_bytes=1 << 20)
    buf.add(pts(0, 6))
    batch = buf.take(4)
    buf.commit(batch)
    buf.add(pts(6, 1))
    inflight = buf.take(1)  # in flight when the monitor stops: kept
    buf.close()
    assert inflight.lines == ["m v=4i 4"]
    again = PointBuffer(tmp_path, max_memory=2, max_spill_bytes=1 << 20)
    assert len(again) == 3
    assert drain(again) == pts(4, 3)


def test_a_torn_last_line_is_not_sent(tmp_path):
    buf = PointBuffer(tmp_path, max_memory=1, max_spill_bytes=1 << 20)
    buf.add(pts(0, 2))
    with open(buf.spill_path, "ab") as f:
        f.write(b"m v=9")  # a crash in the middle of a spill
    assert drain(buf) == pts(0, 2)


def test_beyond_the_spill_bound_new_points_are_dropped_and_counted(tmp_path):
    line = len(pts(0, 1)[0]) + 1
    buf = PointBuffer(tmp_path, max_memory=2, max_spill_bytes=4 * line)
    buf.add(pts(0, 3))  # 3 lines spilled
    buf.add(pts(3, 3))  # 3 more would pass the bound
    assert buf.spilled == 3 and buf.dropped == 3
    assert drain(buf) == pts(0, 3)
