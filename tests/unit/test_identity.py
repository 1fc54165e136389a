"""One version (the package's), one User-Agent, one default id for every service."""

from __future__ import annotations

import re
from importlib import metadata

from services.common import identity


def test_the_version_is_the_package_metadata():
    assert identity.VERSION == metadata.version("surge")
    assert identity.USER_AGENT == "surge/" + ".".join(identity.VERSION.split(".")[:2])


def test_a_default_id_is_one_safe_token():
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*-[0-9]+", identity.default_id())
