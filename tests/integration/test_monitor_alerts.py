"""Alerts delivered, with real parts: a monitor process, an SMTP server that demands
STARTTLS and a login (aiosmtpd, in this process), and an HTTP receiver for the webhook.

The rule watches the host's open file handles, which this test can move: it opens
thousands of handles (the rule fires), then closes them (it resolves).
"""

from __future__ import annotations

import json
import os
import resource
import ssl
import threading
from email import message_from_bytes, policy

import msgspec
import nats
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from schemas import subjects
from schemas.host import Alert, MonitorStatus
from services.cli.secure import make_certificates
from tests.conftest import Cluster, free_port, until
from tests.events import Changes

pytestmark = pytest.mark.timeout(60)

HANDLES = 12_000  # far above what other processes on a shared machine open and close


def allow_handles(n: int) -> None:
    """Raise this process's open-file limit to ``n`` plus room (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 1024
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the open-file limit {hard} is below the {want} this test opens")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Mailbox:
    """aiosmtpd handler (on the controller's thread): keeps every message, records who
    logged in, and says each message to ``changes``."""

    def __init__(self, changes: Changes) -> None:
        self.messages: list = []
        self.logins: list[str] = []
        self.lock = threading.Lock()
        self.changes = changes

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.messages.append((session.authenticated, session.ssl is not None,
                                  envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        self.changes.changed_threadsafe()
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"surge"
              and auth_data.password == b"s3cret")
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok)

    def subjects(self) -> list[str]:
        with self.lock:
            return [m[3]["Subject"] for m in self.messages]


def host_handles() -> int:
    with open("/proc/sys/fs/file-nr") as f:
        allocated, free, _ = f.read().split()
    return int(allocated) - int(free)


async def test_alert_mailed_over_starttls_with_login_and_posted_to_webhook_with_retry(
    cluster: Cluster, make_monitor, tmp_path
):
    tls = make_certificates(tmp_path / "certs")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    heard = Changes()  # a mail, a webhook post, an alert or a host sample
    box = Mailbox(heard)
    smtp_port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=smtp_port, tls_context=context,
                      require_starttls=True, auth_required=True,
                      authenticator=box.authenticate)
    smtp.start()

    posts: list[dict] = []
    calls = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first delivery fails: it must be retried
            return web.Response(status=503, text="busy")
        posts.append(json.loads(await request.read()))
        heard.changed()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()

    host = "it-alerts"
    nc = await nats.connect(cluster.url)
    alerts: list[Alert] = []
    samples = 0

    async def on_alert(msg):
        alerts.append(msgspec.json.decode(msg.data, type=Alert))
        heard.changed()

    async def on_sample(msg):
        nonlocal samples
        samples += 1
        heard.changed()

    await nc.subscribe(subjects.alerts(host), cb=on_alert)
    await nc.subscribe(subjects.host(host), cb=on_sample)
    await nc.flush()
    allow_handles(HANDLES)
    threshold = host_handles() + HANDLES // 2
    monitor = make_monitor(
        host, SURGE_SAMPLE_S="0.3", SURGE_ALERTS=f"fds_high=open_fds>{threshold}",
        SURGE_ALERT_SMTP_HOST="127.0.0.1", SURGE_ALERT_SMTP_PORT=str(smtp_port),
        SURGE_ALERT_SMTP_USER="surge", SURGE_ALERT_SMTP_PASSWORD="s3cret",
        SURGE_ALERT_SMTP_FROM="surge@test", SURGE_ALERT_SMTP_TO="ops@test,dev@test",
        SURGE_ALERT_SMTP_CAFILE=tls.ca,
        SURGE_ALERT_WEBHOOK=f"http://127.0.0.1:{hook_port}/hook",
        SURGE_ALERT_BACKOFF_S="0.5",
    )
    handles: list[int] = []
    try:
        await heard.until(lambda: samples >= 2, 20, "the monitor sampling")
        assert not alerts
        handles = [os.open("/dev/null", os.O_RDONLY) for _ in range(HANDLES)]
        await heard.until(lambda: any(a.state == "firing" for a in alerts), 20, "the rule firing")
        before = samples
        await heard.until(lambda: len(box.messages) >= 1 and len(posts) >= 1, 20,
                          "the firing alert by mail and webhook")
        # the failed webhook delivery was retried after its backoff; sampling went on
        assert calls == 2 and samples > before
        for fd in handles:
            os.close(fd)
        handles = []
        await heard.until(lambda: len(box.messages) >= 2 and len(posts) >= 2, 20,
                          "the resolve by mail and webhook")

        (auth1, tls1, rcpt, mail), (_, _, _, resolved) = box.messages[:2]
        assert auth1 and tls1 and box.logins  # logged in, over STARTTLS
        assert rcpt == ["ops@test", "dev@test"]
        assert mail["Subject"] == f"[surge] FIRING: fds_high on {host}"
        assert mail["From"] == "surge@test"
        assert f"open_fds > {threshold}" in mail.get_content()
        assert resolved["Subject"] == f"[surge] RESOLVED: fds_high on {host}"
        firing, done = posts[:2]
        assert firing["text"].startswith(":red_circle: FIRING fds_high on it-alerts")
        assert (firing["state"], firing["name"], firing["metric"], firing["threshold"]) == \
            ("firing", "fds_high", "open_fds", threshold)
        assert firing["value"] > threshold
        assert done["state"] == "resolved" and "RESOLVED" in done["text"]

        async def counted() -> MonitorStatus | None:
            # a probe: the monitor counts a delivery once it has read the answer, a moment
            # after the mail or post is heard here, and publishes no event for it
            msg = await nc.request(subjects.monitor_status(host), b"", timeout=2)
            st = msgspec.json.decode(msg.data, type=MonitorStatus)
            return st if st.alerts_sent + st.alerts_failed + st.alerts_dropped >= 4 else None

        st = await until(counted, 5, "the four deliveries counted")
        assert (st.alerts_sent, st.alerts_failed, st.alerts_dropped) == (4, 0, 0)
        out = monitor.output()
        assert "alert delivery failed" in out and "HTTP 503" in out
    finally:
        for fd in handles:
            os.close(fd)
        await nc.close()
        smtp.stop()
        await runner.cleanup()
    assert monitor.stop() == 0


async def test_unreachable_smtp_is_retried_logged_and_does_not_stop_sampling(
    cluster: Cluster, make_monitor
):
    host = "it-alerts-down"
    nc = await nats.connect(cluster.url)
    samples = 0
    sampled = Changes()

    async def on_sample(msg):
        nonlocal samples
        samples += 1
        sampled.changed()

    await nc.subscribe(subjects.host(host), cb=on_sample)
    await nc.flush()
    monitor = make_monitor(
        host, SURGE_SAMPLE_S="0.2", SURGE_ALERTS="always=cpu_pct>=0",
        SURGE_ALERT_SMTP_HOST="127.0.0.1", SURGE_ALERT_SMTP_PORT=str(free_port()),  # nobody
        SURGE_ALERT_SMTP_TO="ops@test", SURGE_ALERT_RETRIES="2", SURGE_ALERT_BACKOFF_S="0.2",
    )
    try:
        async def gave_up() -> MonitorStatus | None:
            try:
                msg = await nc.request(subjects.monitor_status(host), b"", timeout=1)
            except Exception:
                return None
            st = msgspec.json.decode(msg.data, type=MonitorStatus)
            return st if st.alerts_failed == 1 else None

        st = await until(gave_up, 20, "the delivery given up after its retries")
        assert st.alerts_sent == 0
        n = samples
        await sampled.until(lambda: samples >= n + 3, 10, "sampling going on")
        out = monitor.output()
        assert out.count("alert delivery failed") == 3  # the first try and two retries
        assert "alert not delivered after retries" in out
    finally:
        await nc.close()
    assert monitor.stop() == 0
