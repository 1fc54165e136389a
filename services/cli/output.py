"""A closed stdout (``surge … | head``): how a command notices and ends, as Unix tools do."""

from __future__ import annotations

import contextlib
import os
import select
import sys
from typing import NoReturn


def output_closed() -> NoReturn:
    """The reader of stdout went away (``surge run plan | head -3``): stdout goes to
    /dev/null and the command ends with 141, silently, as a Unix tool killed by SIGPIPE
    does, but through its ``finally`` blocks (``surge up`` stops its stack). A run being
    followed goes on."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    raise SystemExit(141)


def stdout_closed() -> bool:
    """Whether stdout is a pipe nobody reads any more (the poll says POLLERR)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError):
        return False
