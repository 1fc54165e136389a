"""Awaited events for the tests: a condition re-checked each time what it reads changes.

A test that waits for something (a message on a subject, a KV key written, a request
received, a line a process printed) awaits it here with a deadline, instead of a loop
of sleep and look:

* ``Changes``: anything that says when it changed (``changed()``; from another thread
  ``changed_threadsafe()``); ``await changes.until(predicate, limit_s, what)`` re-checks
  the predicate at each change and returns its first truthy value.
* ``Heard``: what a subscription (or a stream, from its first message) has heard, in
  order; ``await heard.first(match, ...)``.
* ``Watched``: the latest value of each key of a KV watch (deletes and expiries as
  ``None``); ``await watched.until(predicate, ...)`` over ``watched.latest``.
* ``Lines``: a process's output copied line by line to its log file; ``await
  lines.said(text, ...)`` (``wait_said`` from synchronous code).

A predicate may be sync or async. The deadline is the test's bound on the event, not
a pace: nothing here wakes on a timer.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


class Changes:
    """Something that changes on events; waiters re-check their predicate at each one."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def changed(self) -> None:
        """Wake every waiter (from the event loop's thread)."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def changed_threadsafe(self) -> None:
        """``changed()`` from another thread (a threaded server, a pipe reader)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.changed)

    async def until(self, predicate: Callable[[], Any], limit_s: float, what: str) -> Any:
        """The predicate's first truthy value, checked now and after each change; a
        ``TimeoutError`` naming ``what`` if none comes in ``limit_s``."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        deadline = loop.time() + limit_s
        while True:
            # registered before the check: a change while an async predicate runs wakes us
            fut = loop.create_future()
            self._waiters.append(fut)
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            try:
                await asyncio.wait_for(fut, max(deadline - loop.time(), 0))
            except TimeoutError:
                # not checked again: a condition that became true unsaid is a missing
                # signal, and must fail here rather than pass at the deadline
                raise TimeoutError(f"timed out after {limit_s}s waiting for {what}") from None


class Heard(Changes):
    """Every message of a subscription, decoded (``decode(msg)``; the Msg itself if None)."""

    def __init__(self, decode: Callable[[Any], Any] | None = None) -> None:
        super().__init__()
        self.items: list[Any] = []
        self._decode = decode
        self._sub = None

    @classmethod
    async def subscribe(cls, nc, subject: str, decode: Callable[[Any], Any] | None = None) -> Heard:
        heard = cls(decode)
        heard._sub = await nc.subscribe(subject, cb=heard._on_msg)
        return heard

    @classmethod
    async def stream(cls, js, subject: str, decode: Callable[[Any], Any] | None = None) -> Heard:
        """Every message a JetStream stream holds on ``subject``, then every one to come
        (an ordered consumer from the first): nothing stored before it is missed."""
        from nats.js.api import DeliverPolicy

        heard = cls(decode)
        heard._sub = await js.subscribe(subject, cb=heard._on_msg, ordered_consumer=True,
                                        deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0)
        return heard

    async def _on_msg(self, msg) -> None:
        self.add(self._decode(msg) if self._decode else msg)

    def add(self, item: Any) -> None:
        """Heard by a handler of the test's own (one that answers, say)."""
        self.items.append(item)
        self.changed()

    async def first(self, match: Callable[[Any], Any], limit_s: float, what: str) -> Any:
        """The first item heard (so far or next) for which ``match`` is truthy."""
        return await self.until(lambda: next((i for i in self.items if match(i)), None), limit_s, what)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()


class Watched(Changes):
    """The latest entry of each key a KV watch covers: ``latest[key]`` is its value's
    bytes, or None once deleted or expired (a key never seen is absent). A predicate is
    first checked once the keys' current values are in (``loaded``)."""

    def __init__(self) -> None:
        super().__init__()
        self.latest: dict[str, bytes | None] = {}
        self.loaded = False
        self._watcher = None
        self._task: asyncio.Task | None = None

    @classmethod
    async def watch(cls, kv, keys: str = ">") -> Watched:
        watched = cls()
        watched._watcher = await kv.watch(keys)
        watched._task = asyncio.create_task(watched._follow())
        return watched

    async def _follow(self) -> None:
        async for entry in self._watcher:
            if entry is None:  # the end of the current values
                self.loaded = True
            else:
                deleted = entry.operation in ("DEL", "PURGE")
                self.latest[entry.key] = None if deleted else entry.value
            self.changed()

    async def until(self, predicate: Callable[[], Any], limit_s: float, what: str) -> Any:
        return await super().until(lambda: self.loaded and predicate(), limit_s, what)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._watcher is not None:
            try:
                await self._watcher.stop()
            except Exception:  # the connection already gone: nothing to stop
                pass

    async def __aenter__(self) -> Watched:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


async def kv_until(kv, keys: str, predicate: Callable[[dict[str, bytes | None]], Any],
                   limit_s: float, what: str) -> Any:
    """Watch ``keys`` of ``kv`` until ``predicate(latest)`` is truthy; its value."""
    async with await Watched.watch(kv, keys) as watched:
        return await watched.until(lambda: predicate(watched.latest), limit_s, what)


class Lines(Changes):
    """A process's stdout (and stderr) copied to ``log`` as it comes by a thread, which
    says so to whoever waits for a text in it.

    Every read of the pipe happens under one lock, by the thread or by ``text()``: what the
    process wrote before ``text()`` is in it (no read taken off the pipe and not yet kept).
    """

    def __init__(self, popen: subprocess.Popen, log: BinaryIO) -> None:
        super().__init__()
        self.popen = popen
        self._fd = popen.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._log = log
        self._data = bytearray()
        self._eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        """What the pipe holds now, into the log and ``_data`` (under ``_cond``)."""
        while not self._eof:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            if not chunk:  # the process (and whatever inherited its stdout) is gone
                self._eof = True
                self._log.close()
                self.popen.stdout.close()
            else:
                self._log.write(chunk)
                self._log.flush()
                self._data += chunk
            self._cond.notify_all()

    def _pump(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._fd, selectors.EVENT_READ)
            while not self._eof:
                sel.select()
                with self._cond:
                    self._drain()
                self.changed_threadsafe()

    def text(self) -> str:
        """All it has written so far."""
        with self._cond:
            self._drain()
            return self._data.decode(errors="replace")

    def _saw(self, text: str) -> bool:
        return text.encode() in self._data

    def ended(self) -> bool:
        """Its output is closed (the process, and whatever inherited its stdout, is gone)."""
        return self._eof

    async def said(self, text: str, limit_s: float, what: str | None = None) -> None:
        """Until it writes ``text`` (within a line); a ``RuntimeError`` if its output ends
        first (the process exited without saying it)."""

        def seen() -> bool:
            with self._cond:
                if self._saw(text):
                    return True
                if self._eof:
                    raise RuntimeError(f"exited ({self.popen.poll()}) without saying {text!r}")
            return False

        await self.until(seen, limit_s, what or repr(text))

    def wait_said(self, text: str, limit_s: float) -> None:
        """``said`` for synchronous code (a fixture, a thread)."""
        deadline = time.monotonic() + limit_s
        with self._cond:
            while not self._saw(text):
                if self._eof:
                    raise RuntimeError(f"exited ({self.popen.poll()}) without saying {text!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no line with {text!r} in {limit_s}s")
                self._cond.wait(remaining)

    def close(self, limit_s: float = 5.0) -> None:
        """Once the process has ended: until the rest of its output is in the log (a child
        that inherited its stdout and lives on keeps it open: not waited for past
        ``limit_s``)."""
        self._thread.join(limit_s)


def piped(cmd: list[str], log_path: Path, **popen) -> tuple[subprocess.Popen, Lines]:
    """Start ``cmd`` with its output going to ``log_path`` through ``Lines``."""
    popen_ = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)
    return popen_, Lines(popen_, open(log_path, "wb"))
