"""``python -m services.ui``: read config, run the web UI until SIGTERM."""

from __future__ import annotations

from services.common.runner import run_service
from services.ui.config import Config
from services.ui.service import Service


def main() -> None:
    config = Config.from_env()
    run_service("ui", config, lambda: Service(config))


if __name__ == "__main__":
    main()
