"""A real Prometheus for tests (Debian package ``prometheus``): scrapes given targets
every second and answers PromQL over its HTTP API."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_http

BINARY = Path("/usr/bin/prometheus")


class Prometheus:
    def __init__(self, tmp: Path, targets: list[str]) -> None:
        if not BINARY.exists():
            pytest.fail(f"Prometheus is missing ({BINARY}); `make debs` installs the Debian "
                        "package prometheus that the monitor's /metrics test scrapes with")
        self.dir = tmp / "prometheus"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 900ms}\n"
            "scrape_configs:\n"
            f"  - job_name: surge\n    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
        )
        self.log_path = self.dir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def start(self, limit_s: float = 20.0) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BINARY), f"--config.file={self.config}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        wait_http(f"{self.url}/-/ready", self.proc, self.log_path, limit_s)

    def query(self, promql: str) -> list[dict]:
        """An instant query's result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
