"""The generator's start (services/generator/__main__.py): what it sets up for the process."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(30)


def test_the_soft_limit_of_open_files_is_raised_to_the_hard_one():
    # a closed-model user is a connection: a soft limit of 256 would fail users beyond it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"this machine's hard limit of open files is {hard}")
    code = (
        "import resource\n"
        "h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, h))\n"
        "from services.generator.__main__ import raise_open_files\n"
        "print(*raise_open_files(), h)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True)
    now_soft, now_hard, was_hard = (int(x) for x in out.stdout.split())
    assert now_hard == was_hard
    assert now_soft == now_hard if was_hard != resource.RLIM_INFINITY else now_soft > 256
