"""A threshold on a step that never ran: its row is in the report (zeros), its value is 0
for counts and rates, and the verdict says why it failed."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from services.common.client import CoordinatorClient
from tests.conftest import Cluster, generators_registered
from tests.recording import RecordingServer

pytestmark = pytest.mark.timeout(60)


async def test_a_step_that_never_ran_has_its_row_and_its_threshold_says_why(cluster: Cluster, tmp_path):
    cluster.coordinator()
    cluster.generator()
    api = await CoordinatorClient.connect(cluster.url)
    try:
        await generators_registered(api, 1)
    finally:
        await api.close()
    with RecordingServer() as server:
        plan = {"name": "never", "target": server.url, "rate": 2, "duration": "2s",
                "flows": [{"name": "f", "steps": [
                    # the server's answer has no token: the flow ends here every time
                    {"name": "first", "path": "/a", "extract": {"token": {"jsonpath": "$.token"}}},
                    {"name": "second", "path": "/b?t={{token}}"}]}],
                "thresholds": {"requests": {"second": {"error_rate": 0.01, "p95_ms": 500}}}}
        (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
        done = await asyncio.to_thread(cluster.cli, "run", str(tmp_path / "p.yaml"), "--timeout", "30",
                                       "--report", str(tmp_path / "r.json"))
        assert {r.target for r in server.recorder.take()} == {"/a"}
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    second = report["requests"]["second"]
    assert (second["requests"], second["errors"], second["error_rate"]) == (0, 0, 0.0)
    why = "no data: 'second' sent no request (it never ran)"
    assert [(t["name"], t["value"], t["ok"], t["reason"]) for t in report["thresholds"]] == [
        ("p95_ms", None, False, why), ("error_rate", 0.0, False, why)]
    assert report["verdict"] == "fail"
    assert why in done.stdout  # the summary prints it beside FAILED
