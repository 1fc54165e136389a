"""``python -m services.ui``: read config, run the web UI until SIGTERM."""

from __future__ import annotations

import os

from services.common import contexts
from services.common.runner import run_service
from services.ui.config import Config
from services.ui.service import Service


def main() -> None:
    # started by hand (no SURGE_NATS_*): the current `surge context`, as the CLI does
    os.environ.update(contexts.fallback_env())
    config = Config.from_env()
    run_service("ui", config, lambda: Service(config))


if __name__ == "__main__":
    main()
