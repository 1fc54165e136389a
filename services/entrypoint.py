"""`surge-service NAME`: the container's one entrypoint, which service to run by name.

One image serves every role; a Kubernetes manifest says `args: [surge-service,
generator]`. Running the service's module as ``__main__`` keeps a single way of
starting each service (the same as ``python -m services.<name>``).
"""

from __future__ import annotations

import runpy
import sys

SERVICES = ("coordinator", "generator", "monitor", "ui", "target")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in SERVICES:
        print(f"usage: surge-service {{{'|'.join(SERVICES)}}}", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [f"surge-service {args[0]}"]
    runpy.run_module(f"services.{args[0]}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
