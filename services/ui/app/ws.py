"""The WebSocket: one per browser, fed from the hub through the client's bounded queue.

The browser sends ``{"sub": [topics], "unsub": [topics]}``; topics are ``runs``,
``hosts``, ``alerts``, ``generators`` and ``live:<run id>``. Each new topic starts with
its backlog frame. A browser too slow to take its frames is dropped by the hub; its
socket is closed with code 4008 and the page reconnects.
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog
from aiohttp import WSMsgType, web

from services.ui import inputs, state
from services.ui.fanout import Client

log = structlog.get_logger(__name__)

SERVICE: web.AppKey = web.AppKey("service", object)
SEND_TIMEOUT_S = 10.0
CLOSE_TOO_SLOW = 4008


def _error(message: str) -> str:
    return msgspec.json.encode({"t": "error", "k": None, "d": {"message": message}}).decode()


def valid_topic(topic: str) -> bool:
    if topic in state.STATIC_TOPICS:
        return True
    return topic.startswith(state.LIVE_PREFIX) and bool(
        inputs.RUN_ID_RE.match(topic[len(state.LIVE_PREFIX):]))


def handle_message(svc, client: Client, data: str) -> None:
    try:
        msg = msgspec.json.decode(data, type=inputs.Subscribe)
    except msgspec.DecodeError as exc:
        client.offer(_error(f"bad message: {exc}"))
        return
    for topic in msg.unsub:
        svc.hub.unsubscribe(client, topic)
    for topic in msg.sub:
        if not valid_topic(topic):
            client.offer(_error(f"unknown topic {topic[:80]!r}"))
            continue
        if topic in client.topics:
            continue
        for text in svc.state.backlog(topic):
            client.offer(text)
        if not svc.hub.subscribe(client, topic):
            client.offer(_error("too many topics"))


async def _pump(ws: web.WebSocketResponse, client: Client) -> None:
    """Send queued frames in order; close the socket when the client is dropped or stuck."""
    try:
        while (text := await client.next()) is not None:
            await asyncio.wait_for(ws.send_str(text), SEND_TIMEOUT_S)
    except asyncio.CancelledError:
        if not client.dropped:
            raise
    except Exception as exc:  # a send timed out or the socket broke
        log.info("websocket send failed", error=str(exc) or type(exc).__name__)
        client.dropped = True
    if client.dropped and not ws.closed:
        await ws.close(code=CLOSE_TOO_SLOW, message=b"too slow")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    svc = request.app[SERVICE]
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    client = svc.hub.connect()
    pump = asyncio.create_task(_pump(ws, client))

    client.on_drop = pump.cancel
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                handle_message(svc, client, msg.data)
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    except Exception as exc:  # a broken socket must not reach the app
        log.info("websocket ended", error=str(exc))
    finally:
        svc.hub.disconnect(client)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        if not ws.closed:
            await ws.close()
    return ws
