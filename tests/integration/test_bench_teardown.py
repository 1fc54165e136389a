"""The benches' teardown (``bench.stack.stop_processes``) stops the clients before the
nats-server, so that every client still has its bus while it says goodbye."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from bench.stack import stop_processes
from tests.conftest import NATS_SERVER, PY, ROOT, free_port
from tests.events import piped

pytestmark = pytest.mark.timeout(60)

# A client whose goodbye needs the bus for a moment after its SIGTERM (a generator
# flushing its last intervals): exit 0 if the nats-server still answers then, 3 if not.
LINGERING = textwrap.dedent("""
    import signal, socket, sys, time
    port = int(sys.argv[1])
    def bye(*_):
        time.sleep(0.3)  # the goodbye's moment on the bus: what the order must allow
        with socket.socket() as s:
            sys.exit(0 if s.connect_ex(("127.0.0.1", port)) == 0 else 3)
    signal.signal(signal.SIGTERM, bye)
    print("ready", flush=True)
    while True:
        signal.pause()  # nothing to do until the SIGTERM
""")


async def test_clients_stop_before_the_nats_server(tmp_path: Path):
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    procs, outputs = [], []
    try:
        for name, cmd, env in (
            ("nats", [NATS_SERVER, "-js", "-sd", str(tmp_path / "js"), "-a", "127.0.0.1", "-p", str(port)], None),
            ("generator", [PY, "-m", "services.generator"],
             {**os.environ, "SURGE_NATS_URL": url, "SURGE_GENERATOR_ID": "gen-teardown"}),
            ("lingering", [PY, "-c", LINGERING, str(port)], None),
        ):
            proc, lines = piped(cmd, tmp_path / f"{name}.log", cwd=ROOT, env=env)
            procs.append(proc)
            outputs.append(lines)
            if name == "nats":
                lines.wait_said("Server is ready", 10)
        gen_out = outputs[1]
        await gen_out.said("started", 20, "the generator started")
        await outputs[2].said("ready", 10, "the lingering client ready")
    finally:
        stop_processes(procs, grace_s=8.0)
        for lines in outputs:
            lines.close()
    assert procs[2].returncode == 0, "the nats-server was gone before its client said goodbye"
    assert procs[1].returncode == 0, gen_out.text()
    assert "unclean disconnect" not in gen_out.text()
