"""python -m services.generator: register, take assignments, make load."""

from __future__ import annotations

from services.common.runner import run_service
from services.generator.config import Config
from services.generator.service import Service


def main() -> None:
    config = Config.from_env()
    run_service("generator", config, lambda: Service(config))


if __name__ == "__main__":
    main()
