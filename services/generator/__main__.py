"""python -m services.generator: register, take assignments, make load."""

from __future__ import annotations

import resource

from services.common.runner import run_service
from services.generator.config import Config
from services.generator.service import Service


def raise_open_files() -> tuple[int, int]:
    """The soft limit of open files up to the hard one, as Locust does at start: each
    closed-model user holds its own connection (docs/engine.md, "Closed model"), and a
    default soft limit of 1,024 would fail the users beyond it with ``connect`` errors.
    Engine worker processes inherit it. Returns the limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 20 if hard == resource.RLIM_INFINITY else hard  # Linux's nr_open by default
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):  # more than the kernel takes: keep what we had
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def main() -> None:
    config = Config.from_env()
    raise_open_files()
    run_service("generator", config, lambda: Service(config))


if __name__ == "__main__":
    main()
