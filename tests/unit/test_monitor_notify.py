"""services.monitor.notify: message shapes, de-duplication, rate limit, retries."""

from __future__ import annotations

import asyncio
import json

import pytest

from schemas.host import Alert
from services.monitor.notify import Dedup, Notifier, TokenBucket, email_of, webhook_body
from tests.conftest import until

pytestmark = pytest.mark.timeout(10)


def alert(state: str = "firing", ts: float = 1000.0, name: str = "cpu_high") -> Alert:
    return Alert(host="node-1", ts=ts, name=name, metric="cpu_pct", value=97.5, threshold=90.0,
                 state=state, message=f"{name} on node-1: cpu_pct is 97.5 (cpu_pct > 90)")


def test_webhook_body_is_slack_text_plus_fields():
    body = json.loads(webhook_body(alert()))
    assert body["text"].startswith(":red_circle: FIRING cpu_high on node-1")
    assert body["state"] == "firing" and body["value"] == 97.5 and body["host"] == "node-1"
    assert "type" not in body
    assert json.loads(webhook_body(alert("resolved")))["text"].startswith(
        ":large_green_circle: RESOLVED")


def test_email_names_state_rule_and_host():
    msg = email_of(alert(), "surge@x", ["ops@x", "dev@x"])
    assert msg["Subject"] == "[surge] FIRING: cpu_high on node-1"
    assert msg["To"] == "ops@x, dev@x"
    assert "cpu_pct = 97.5 (threshold 90)" in msg.get_content()


def test_same_state_again_within_window_is_a_duplicate(tmp_path):
    path = tmp_path / "sent.json"
    d = Dedup(300.0, path)
    assert d.admit(alert("firing", 1000.0))
    assert not d.admit(alert("firing", 1100.0))
    assert d.admit(alert("resolved", 1200.0))
    assert d.admit(alert("firing", 1250.0))  # a new firing after a resolve goes out
    assert d.admit(alert("firing", 1000.0, name="disk_low"))  # another rule
    # a restarted monitor remembers: the same firing is not sent twice
    again = Dedup(300.0, path)
    assert not again.admit(alert("firing", 1300.0))
    assert again.admit(alert("firing", 1600.0))  # past the window: a reminder


def test_unreadable_dedup_state_starts_afresh(tmp_path):
    path = tmp_path / "sent.json"
    path.write_text("{not json")
    assert Dedup(300.0, path).admit(alert())


def test_token_bucket_allows_burst_then_rate():
    b = TokenBucket(per_min=3)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not b.take(10.0)  # a third of a token back
    assert b.take(20.0)


class Flaky:
    name = "flaky"

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.calls = 0
        self.sent: list[Alert] = []

    async def send(self, a: Alert) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise ConnectionRefusedError("down")
        self.sent.append(a)


async def test_failed_delivery_is_retried_then_given_up():
    ok, bad = Flaky(fail=2), Flaky(fail=99)
    bad.name = "dead"
    n = Notifier([ok, bad], retries=2, backoff_s=0.01)
    n.start()
    n.submit(alert())
    await until(lambda: n.counts.sent == 1 and n.counts.failed == 1, 5, "one delivered, one given up")
    assert ok.calls == 3 and ok.sent == [alert()]
    assert bad.calls == 3 and bad.sent == []
    assert (n.counts.sent, n.counts.failed) == (1, 1)
    await n.close()


async def test_submit_never_waits_and_drops_beyond_rate_limit():
    class Slow:
        name = "slow"

        async def send(self, a: Alert) -> None:
            await asyncio.Event().wait()  # a channel that never answers

    n = Notifier([Slow()], rate_per_min=2)
    n.start()
    for i in range(5):
        n.submit(alert("firing" if i % 2 == 0 else "resolved", ts=1000.0 + i))
    # firing, resolved go; firing #2 is over the limit (dropped, so not remembered as
    # sent); resolved #2 repeats what went last (duplicate); firing #3 is over the limit
    assert (n.counts.dropped, n.counts.suppressed) == (2, 1)
    await n.close(limit_s=0.1)


def test_bad_settings_stop_the_start_naming_the_variable(tmp_path):
    from schemas.errors import BadRequest
    from services.monitor.config import Config
    from services.monitor.notify import from_config

    cases = {
        "SURGE_ALERT_SMTP_TO": Config(alert_smtp_host="mail"),
        "SURGE_ALERT_WEBHOOK": Config(alert_webhook="hooks.example/x"),
        "SURGE_ALERT_SMTP_CAFILE": Config(alert_smtp_host="mail", alert_smtp_to=["a@b"],
                                          alert_smtp_cafile=str(tmp_path / "missing.pem")),
    }
    for field, config in cases.items():
        with pytest.raises(BadRequest) as err:
            from_config(config, tmp_path)
        assert err.value.field == field
    ok = from_config(Config(alert_smtp_host="mail", alert_smtp_to=["a@b"],
                            alert_webhook="https://hooks.example/x"), tmp_path)
    assert [c.name for c in ok.channels] == ["smtp", "webhook"]
