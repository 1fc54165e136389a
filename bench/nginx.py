"""A throwaway nginx on 127.0.0.1 for the bench: own config in a temp dir, one worker, one core."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
STATUS = "surge-bench-status"
BODY = b"surge bench: a small static file served by nginx\n" * 8  # ~400 bytes

CONF = """\
daemon off;
worker_processes 1;
worker_cpu_affinity {mask};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    # keep the file's descriptor open: without it every request costs nginx an
    # open/fstat/close and its one worker, not the client, caps the run (~47k vs ~70k/s
    # under wrk here). sendfile stays off: for 408 bytes it is a second syscall.
    open_file_cache max=16 inactive=300s;
    sendfile off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    types {{ text/plain txt; }}
    default_type text/plain;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {dir}/www;
        location / {{ index index.txt; }}
        # the server's own request counter: every client's per-second count measured
        # the same way, by the server (SecondCounter)
        location = /{status} {{ stub_status; }}
    }}
}}
"""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench dies, however it dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """``with Nginx(core=0) as n: n.url`` — serves ``/index.txt`` (and ``/``)."""

    def __init__(self, core: int | None = 0) -> None:
        self.core = core
        self.dir = Path(tempfile.mkdtemp(prefix="surge-bench-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/index.txt"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Nginx:
        self.dir.chmod(0o755)  # the worker may run as nobody
        (self.dir / "www").mkdir()
        (self.dir / "www" / "index.txt").write_bytes(BODY)
        mask = "auto" if self.core is None else format(1 << self.core, "b")
        (self.dir / "nginx.conf").write_text(CONF.format(dir=self.dir, port=self.port, mask=mask, status=STATUS))
        self._start()
        return self

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir), "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening in 10 s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class SecondCounter:
    """nginx's own request count, read at every whole wall-clock second on one keep-alive
    connection, so any client's per-second throughput is measured by the server.

    ``with SecondCounter(port) as c: run(); c.per_second(floor)`` gives the counts of the
    whole seconds under load: seconds below ``floor`` (half an open run's target, say) are
    before or after the load, and the first and last loaded seconds are dropped as partial.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nginx-counter", daemon=True)

    def __enter__(self) -> SecondCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _read(self, sock: socket.socket) -> int:
        sock.sendall(f"GET /{STATUS} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        data = b""
        while not data.endswith(b"\n") or b"Waiting" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("nginx closed the status connection")
            data += chunk
        # "server accepts handled requests\n 5 5 123 \n"
        return int(data.split(b"requests")[1].split()[2])

    def _run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            second = int(time.time()) + 1
            while not self._stop.wait(max(second - time.time(), 0)):
                self.samples.append((second, self._read(sock)))
                second += 1

    def per_second(self, floor: float) -> list[int]:
        counts = [b - a - 1 for (_, a), (_, b) in zip(self.samples, self.samples[1:])]  # -1: our own GET
        loaded = [i for i, c in enumerate(counts) if c >= floor]
        return counts[loaded[0] + 1:loaded[-1]] if len(loaded) > 2 else []


if __name__ == "__main__":  # handy by hand: python -m bench.nginx
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    with Nginx() as n:
        print(n.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    os._exit(0)


FLOW_CONF = """\
daemon off;
worker_processes 1;
worker_cpu_affinity {mask};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    http2_max_concurrent_streams 128;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    ssl_certificate {dir}/cert.pem;
    ssl_certificate_key {dir}/key.pem;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        listen 127.0.0.1:{tls_port} ssl backlog=4096;
        listen 127.0.0.1:{h2_port} ssl http2 backlog=4096;
        listen 127.0.0.1:{h2c_port} http2 backlog=4096;
        # the bench's 3-step flow (docs/engine.md): answers fixed JSON, so the client's
        # cost per step is what is measured
        location = /login {{ return 200 '{{"token":"t0k3n-abc"}}'; }}
        location = /api/me {{ return 200 '{{"user":"ann","plan":"pro"}}'; }}
        location = /api/orders {{ return 201 '{{"id":17,"status":"accepted"}}'; }}
    }}
}}
"""


class FlowNginx(Nginx):
    """nginx answering the bench's 3-step flow over plain HTTP, TLS (self-signed),
    HTTP/2 over TLS and HTTP/2 over TCP by prior knowledge (h2c): ``origin``,
    ``tls_origin``, ``h2_origin``, ``h2c_origin``."""

    def __enter__(self) -> FlowNginx:
        self.dir.chmod(0o755)
        self.tls_port, self.h2_port, self.h2c_port = free_port(), free_port(), free_port()
        from services.cli.secure import make_certificates  # the same as `surge up`'s: no openssl CLI

        tls = make_certificates(self.dir / "tls")
        shutil.copy(tls.cert, self.dir / "cert.pem")
        shutil.copy(tls.key, self.dir / "key.pem")
        mask = "auto" if self.core is None else format(1 << self.core, "b")
        (self.dir / "nginx.conf").write_text(FLOW_CONF.format(
            dir=self.dir, port=self.port, tls_port=self.tls_port, h2_port=self.h2_port,
            h2c_port=self.h2c_port, mask=mask))
        self.origin = f"http://127.0.0.1:{self.port}"
        self.tls_origin = f"https://127.0.0.1:{self.tls_port}"
        self.h2_origin = f"https://127.0.0.1:{self.h2_port}"
        self.h2c_origin = f"http://127.0.0.1:{self.h2c_port}"  # HTTP/2 only: prior knowledge
        self._start()
        return self
