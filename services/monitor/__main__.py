"""python -m services.monitor: host samples on the bus, host and run metrics in InfluxDB."""

from __future__ import annotations

from services.common.runner import run_service
from services.monitor.config import Config
from services.monitor.service import Service


def main() -> None:
    config = Config.from_env()
    run_service("monitor", config, lambda: Service(config))


if __name__ == "__main__":
    main()
