"""python -m services.coordinator: the run API, slicing, merging and reports."""

from __future__ import annotations

from services.common.runner import run_service
from services.coordinator.config import Config
from services.coordinator.service import Service


def main() -> None:
    config = Config.from_env()
    run_service("coordinator", config, lambda: Service(config))


if __name__ == "__main__":
    main()
