"""Who is speaking: Surge's version (from the package metadata, the one place it is
written is pyproject.toml), the HTTP User-Agent the generators send, and the default id of
a service instance."""

from __future__ import annotations

import os
import socket
from importlib import metadata

from schemas import subjects


def _version() -> str:
    try:
        return metadata.version("surge")
    except metadata.PackageNotFoundError:  # a source tree that was never `pip install -e .`
        return "0+unknown"


#: what `nats micro info`, heartbeats and `surge --version` say
VERSION = _version()

#: the User-Agent of every request a generator sends (major.minor: a patch release does
#: not change what targets see); a plan's headers may replace it
USER_AGENT = "surge/" + ".".join(VERSION.split(".")[:2])


def default_id() -> str:
    """``<host>-<pid>``, one safe subject token of ``[a-z0-9-]`` (the id rules of run and
    generator ids), for a service started without an id of its own."""
    host = subjects.token(socket.gethostname().lower())[:40].strip("-_") or "host"
    return f"{host}-{os.getpid()}".replace("_", "-")
