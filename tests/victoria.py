"""A real InfluxDB-API server for tests: VictoriaMetrics (Debian package victoria-metrics).

It takes influxdb-client's v2 writes (bucket, org and token ignored) and stores field
``f`` of measurement ``m`` as the series ``m_f``; ``export`` reads raw samples back,
duplicates included, which is what a test of "exactly once" needs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_http

BINARY = Path("/usr/bin/victoria-metrics")


class Victoria:
    def __init__(self, tmp: Path) -> None:
        if not BINARY.exists():
            pytest.fail(f"VictoriaMetrics is missing ({BINARY}); `make debs` installs the "
                        "Debian package victoria-metrics that the monitor's tests write to")
        self.data = tmp / "victoria-data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "victoria.log"
        self.proc: subprocess.Popen | None = None

    def start(self, limit_s: float = 15.0) -> None:
        """Start (again: same port, same data) and wait until it answers /health."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BINARY), "-search.latencyOffset=0s", f"-storageDataPath={self.data}",
             f"-httpListenAddr=127.0.0.1:{self.port}", "-loggerLevel=WARN"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        wait_http(f"{self.url}/health", self.proc, self.log_path, limit_s, every_s=0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def export(self, match: str) -> list[dict]:
        """Every raw sample of the series matching ``match``, after a forced flush."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5):
            pass
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as resp:
            text = resp.read().decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]
