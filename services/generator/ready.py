"""The readiness file (SURGE_READY_FILE): present while the generator is registered.

A container orchestrator's probe checks it (Kubernetes: ``test -f``). Written once
the first heartbeat is stored in the registry, removed when the generator stops.
An empty path turns it off.
"""

from __future__ import annotations

import os


def mark_ready(path: str) -> None:
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)  # a probe never sees a half-written file


def mark_not_ready(path: str) -> None:
    if path:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
