"""The ``surge`` console script. Loading the CLI takes a second or more on a busy machine;
Ctrl-C meanwhile is exit code 130, like Ctrl-C later, not a traceback from an import."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from services.cli.__main__ import main as cli
    except KeyboardInterrupt:
        sys.exit(130)
    cli()
