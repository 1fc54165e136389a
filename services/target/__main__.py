"""python -m services.target: a small, fast HTTP server to aim demo and test load at."""

from __future__ import annotations

from services.common.runner import run_service
from services.target.config import Config
from services.target.server import Server


def main() -> None:
    config = Config.from_env()
    run_service("target", config, lambda: Server(config))


if __name__ == "__main__":
    main()
