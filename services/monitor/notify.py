"""Alerts delivered: by e-mail (SMTP, STARTTLS, auth) and by webhook (JSON, Slack ``text``).

The sampling loop hands each ``Alert`` (firing or resolved) to ``Notifier.submit``,
which never waits: it decides at once whether the alert goes out (de-duplication,
rate limit) and puts it on each channel's bounded queue. One task per channel sends,
retries a failed delivery ``retries`` times with doubling backoff, logs every failure,
and after the last one logs the alert as lost. A slow or dead mail server therefore
costs the sampler nothing.

De-duplication: the state last delivered for each (host, rule) is kept, on disk in
the data dir too, so a restarted monitor whose rule fires again does not send the same
"firing" a second time within ``dedup_s``; the "resolved" that follows is still sent.
Rate limit: a token bucket per channel of ``rate_per_min`` messages a minute; what
exceeds it is dropped, counted and logged (the bus keeps every alert regardless).
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiohttp
import msgspec
import structlog

from schemas.errors import BadRequest
from schemas.host import Alert
from services.common.runner import cancel_tasks

log = structlog.get_logger(__name__)


def subject_of(alert: Alert) -> str:
    return f"[surge] {alert.state.upper()}: {alert.name} on {alert.host}"


def text_of(alert: Alert) -> str:
    """One line for a chat channel (Slack's ``text``) and the mail body's first line."""
    mark = ":red_circle:" if alert.state == "firing" else ":large_green_circle:"
    return f"{mark} {alert.state.upper()} {alert.message}"


def webhook_body(alert: Alert) -> bytes:
    """JSON: Slack-compatible ``text`` plus every field of the alert."""
    fields = msgspec.to_builtins(alert)
    fields.pop("type", None)
    return json.dumps({"text": text_of(alert), **fields}).encode()


def email_of(alert: Alert, sender: str, to: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject_of(alert)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(alert.ts))
    msg.set_content(
        f"{alert.message}\n\nhost: {alert.host}\nrule: {alert.name}\nstate: {alert.state}\n"
        f"metric: {alert.metric} = {alert.value:g} (threshold {alert.threshold:g})\n"
        f"at: {when}\n"
    )
    return msg


class Channel(Protocol):
    name: str

    async def send(self, alert: Alert) -> None:
        """Deliver or raise."""


class SmtpChannel:
    name = "smtp"

    def __init__(self, host: str, port: int, sender: str, to: list[str], user: str = "",
                 password: str = "", starttls: bool = True, implicit_tls: bool = False,
                 cafile: str = "", timeout_s: float = 10.0) -> None:
        self.host, self.port, self.sender, self.to = host, port, sender, to
        self.user, self.password = user, password
        self.starttls, self.implicit_tls = starttls, implicit_tls
        try:
            self.context = ssl.create_default_context(cafile=cafile or None)
        except (OSError, ssl.SSLError) as exc:  # a bad CA file stops the start, named
            raise BadRequest(f"SURGE_ALERT_SMTP_CAFILE {cafile!r}: {exc}",
                             "SURGE_ALERT_SMTP_CAFILE") from None
        self.timeout_s = timeout_s

    async def send(self, alert: Alert) -> None:
        await asyncio.to_thread(self._send, email_of(alert, self.sender, self.to))

    def _send(self, msg: EmailMessage) -> None:
        if self.implicit_tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                                  context=self.context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with smtp:
            smtp.ehlo()
            if self.starttls and not self.implicit_tls:
                smtp.starttls(context=self.context)
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(msg)


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, alert: Alert) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        async with self._session.post(self.url, data=webhook_body(alert),
                                      headers={"Content-Type": "application/json"}) as resp:
            if resp.status >= 300:
                body = (await resp.text())[:200]
                raise RuntimeError(f"HTTP {resp.status}: {body}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class TokenBucket:
    """``per_min`` events a minute, bursts up to ``per_min`` (pure: the clock is passed in)."""

    def __init__(self, per_min: float) -> None:
        self.capacity = max(per_min, 1.0)
        self.rate = per_min / 60.0
        self.tokens = self.capacity
        self.at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Dedup:
    """The state last delivered per (host, rule); a repeat of it within ``window_s`` is
    not sent again. Kept in ``path`` (JSON) so it outlives a restart."""

    def __init__(self, window_s: float, path: Path | None = None) -> None:
        self.window_s = window_s
        self.path = path
        self.sent: dict[str, tuple[str, float]] = {}  # "host/rule" -> (state, ts)
        if path is not None and path.exists():
            try:
                self.sent = {k: (v[0], float(v[1])) for k, v in json.loads(path.read_text()).items()}
            except (OSError, ValueError, TypeError, IndexError) as exc:
                log.warning("alert de-duplication state unreadable; starting afresh",
                            path=str(path), error=str(exc))

    def duplicate(self, alert: Alert) -> bool:
        last = self.sent.get(f"{alert.host}/{alert.name}")
        return last is not None and last[0] == alert.state and alert.ts - last[1] < self.window_s

    def record(self, alert: Alert) -> None:
        self.sent[f"{alert.host}/{alert.name}"] = (alert.state, alert.ts)
        self._save()

    def admit(self, alert: Alert) -> bool:
        """Not a duplicate: recorded as sent."""
        if self.duplicate(alert):
            return False
        self.record(alert)
        return True

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.sent))
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("cannot keep alert de-duplication state", error=str(exc))


class Counts(msgspec.Struct, kw_only=True):
    sent: int = 0
    failed: int = 0  # given up after every retry
    dropped: int = 0  # rate limit or a full queue
    suppressed: int = 0  # duplicates


class Notifier:
    def __init__(self, channels: list[Channel], *, retries: int = 3, backoff_s: float = 1.0,
                 dedup: Dedup | None = None, rate_per_min: float = 20.0,
                 queue_size: int = 100) -> None:
        self.channels = channels
        self.retries = retries
        self.backoff_s = backoff_s
        self.dedup = dedup or Dedup(300.0)
        self.buckets = {c.name: TokenBucket(rate_per_min) for c in channels}
        self.queues: dict[str, asyncio.Queue[Alert]] = {
            c.name: asyncio.Queue(queue_size) for c in channels
        }
        self.counts = Counts()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for channel in self.channels:
            self._tasks.append(asyncio.create_task(self._deliver(channel),
                                                   name=f"alerts-{channel.name}"))

    def submit(self, alert: Alert) -> None:
        """Queue the alert for every channel; returns at once."""
        if not self.channels:
            return
        if self.dedup.duplicate(alert):
            self.counts.suppressed += 1
            log.info("alert not sent again (duplicate)", name=alert.name, state=alert.state)
            return
        now = time.monotonic()
        queued = False
        for channel in self.channels:
            if not self.buckets[channel.name].take(now):
                self.counts.dropped += 1
                log.warning("alert dropped by the rate limit", channel=channel.name,
                            name=alert.name, state=alert.state)
                continue
            try:
                self.queues[channel.name].put_nowait(alert)
                queued = True
            except asyncio.QueueFull:
                self.counts.dropped += 1
                log.warning("alert dropped: delivery queue full", channel=channel.name,
                            name=alert.name, state=alert.state)
        if queued:  # a dropped alert is not "sent": the next one like it may go
            self.dedup.record(alert)

    async def _deliver(self, channel: Channel) -> None:
        queue = self.queues[channel.name]
        while True:
            alert = await queue.get()
            delay = self.backoff_s
            for attempt in range(self.retries + 1):
                try:
                    await channel.send(alert)
                    self.counts.sent += 1
                    log.info("alert delivered", channel=channel.name, name=alert.name,
                             state=alert.state, attempt=attempt + 1)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    last = attempt == self.retries
                    log.warning("alert delivery failed", channel=channel.name, name=alert.name,
                                state=alert.state, attempt=attempt + 1,
                                error=f"{type(exc).__name__}: {exc}",
                                retry_in_s=None if last else delay)
                    if last:
                        self.counts.failed += 1
                        log.error("alert not delivered after retries", channel=channel.name,
                                  name=alert.name, state=alert.state, message=alert.message)
                    else:
                        await asyncio.sleep(delay)
                        delay *= 2

    async def close(self, limit_s: float = 2.0) -> None:
        """Give queued alerts up to ``limit_s`` to go out, then stop."""
        deadline = time.monotonic() + limit_s
        while any(not q.empty() for q in self.queues.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await cancel_tasks(self._tasks)
        for channel in self.channels:
            close = getattr(channel, "close", None)
            if close is not None:
                await close()


def from_config(config, data_dir: Path) -> Notifier:  # config: services.monitor.config.Config
    channels: list[Channel] = []
    if config.alert_smtp_host and not config.alert_smtp_to:
        raise BadRequest("SURGE_ALERT_SMTP_HOST is set but SURGE_ALERT_SMTP_TO is empty: "
                         "whom should alerts be mailed to?", "SURGE_ALERT_SMTP_TO")
    if config.alert_webhook and not config.alert_webhook.startswith(("http://", "https://")):
        raise BadRequest(f"SURGE_ALERT_WEBHOOK must be an http(s) URL, not "
                         f"{config.alert_webhook!r}", "SURGE_ALERT_WEBHOOK")
    if config.alert_smtp_host:
        channels.append(SmtpChannel(
            config.alert_smtp_host, config.alert_smtp_port, config.alert_smtp_from,
            list(config.alert_smtp_to), config.alert_smtp_user, config.alert_smtp_password,
            starttls=config.alert_smtp_starttls, implicit_tls=config.alert_smtp_ssl,
            cafile=config.alert_smtp_cafile, timeout_s=config.alert_smtp_timeout_s,
        ))
    if config.alert_webhook:
        channels.append(WebhookChannel(config.alert_webhook, config.alert_webhook_timeout_s))
    return Notifier(channels, retries=config.alert_retries, backoff_s=config.alert_backoff_s,
                    dedup=Dedup(config.alert_dedup_s, data_dir / "alerts-sent.json"),
                    rate_per_min=config.alert_rate_per_min)
