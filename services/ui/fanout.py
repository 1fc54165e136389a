"""Fan-out from one NATS subscription per subject to many browsers. Pure, no I/O.

Every browser is a ``Client`` with a bounded queue of frames. ``Hub.publish`` puts a
frame (already encoded once, shared by every client) on each subscribed client's queue
without waiting; a client whose queue is full is **dropped** (marked closed and removed
from every topic), so a slow browser never delays the others or the NATS callback.
The WebSocket handler drains the queue with ``Client.next()`` and closes the socket of
a dropped client; the browser reconnects and starts again from the backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Client:
    """One browser's bounded queue of outgoing frames."""

    def __init__(self, client_id: int, max_queue: int) -> None:
        self.id = client_id
        self.max_queue = max_queue
        self.topics: set[str] = set()
        self.dropped = False
        self.closed = False
        self.sent = 0
        self._queue: deque[str] = deque()
        self._ready = asyncio.Event()
        self.on_drop: Callable[[], None] | None = None  # e.g. close the socket now

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, frame: str) -> bool:
        """Queue a frame; False (and the client is dropped) when the queue is full."""
        if self.closed:
            return False
        if len(self._queue) >= self.max_queue:
            self.dropped = True
            self.close()
            if self.on_drop is not None:
                self.on_drop()
            return False
        self._queue.append(frame)
        self._ready.set()
        return True

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self._ready.set()

    async def next(self) -> str | None:
        """The next frame to send, or None once the client is closed or dropped."""
        while not self._queue:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self.closed:
            return None
        self.sent += 1
        return self._queue.popleft()


class Hub:
    """Topics -> clients. ``publish`` never blocks and never raises for a bad client."""

    def __init__(self, max_queue: int = 256, max_topics_per_client: int = 64) -> None:
        self.max_queue = max_queue
        self.max_topics = max_topics_per_client
        self._topics: dict[str, set[Client]] = {}
        self._clients: dict[int, Client] = {}
        self._next_id = 0
        self.dropped_total = 0

    @property
    def clients(self) -> list[Client]:
        return list(self._clients.values())

    def connect(self) -> Client:
        self._next_id += 1
        client = Client(self._next_id, self.max_queue)
        self._clients[client.id] = client
        return client

    def disconnect(self, client: Client) -> None:
        client.close()
        self._clients.pop(client.id, None)
        for topic in list(client.topics):
            self.unsubscribe(client, topic)

    def subscribe(self, client: Client, topic: str) -> bool:
        if client.closed or client.id not in self._clients:
            return False
        if topic not in client.topics and len(client.topics) >= self.max_topics:
            return False
        client.topics.add(topic)
        self._topics.setdefault(topic, set()).add(client)
        return True

    def unsubscribe(self, client: Client, topic: str) -> None:
        client.topics.discard(topic)
        members = self._topics.get(topic)
        if members is not None:
            members.discard(client)
            if not members:
                del self._topics[topic]

    def subscribers(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    def publish(self, topic: str, frame: str) -> int:
        """Offer ``frame`` to every subscriber of ``topic``; returns how many were dropped."""
        members = self._topics.get(topic)
        if not members:
            return 0
        dropped = [c for c in list(members) if not c.offer(frame)]
        for client in dropped:
            self.disconnect(client)
        self.dropped_total += len(dropped)
        return len(dropped)
