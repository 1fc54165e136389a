"""The CLI from any shell: a secured `surge up`, then `surge` from clean environments.

`surge up` runs as a real process (nats-server with per-role users and TLS, the
coordinator, a generator, the demo target) with XDG_CONFIG_HOME in a temporary
directory; every `surge` below is a subprocess with no SURGE_* variable at all.
Failures must be one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from services.cli import secure
from services.common import contexts
from tests.conftest import PY, ROOT, Cluster, free_port
from tests.events import piped

pytestmark = pytest.mark.timeout(90)


def clean_env(config: Path, **extra: str) -> dict[str, str]:
    """A shell that never exported anything: no SURGE_*, its own config directory."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(config.parent),
            "XDG_CONFIG_HOME": str(config), "COLUMNS": "200", **extra}


def surge(*args: str, env: dict[str, str], timeout_s: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "services.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def startup_s(env: dict[str, str]) -> float:
    """How long `surge` takes to start and end with nothing to wait for, now: on a busy
    2-core machine the interpreter and imports alone take seconds, which a bound on the
    command's own waiting (--timeout) must not count."""
    t0 = time.monotonic()
    done = surge("context", "ls", env=env)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - t0


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


class Up:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "config"
        self.data = tmp / "data"
        self.nats_url = f"nats://127.0.0.1:{free_port()}"
        self.target_port = free_port()
        self.log = tmp / "up.log"
        env = {**os.environ, "XDG_CONFIG_HOME": str(self.config), "SURGE_UI_PORT": str(free_port())}
        for key in [k for k in env if k.startswith("SURGE_NATS_")]:
            del env[key]
        self.proc, self.lines = piped(
            [PY, "-m", "services.cli", "up", "--generators", "1", "--data-dir", str(self.data),
             "--nats", self.nats_url, "--target-port", str(self.target_port)], self.log,
            cwd=ROOT, env=env, start_new_session=True)  # its stack in a group of its own: see stop()
        try:
            self.lines.wait_said("Surge is up", 60)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(f"surge up did not come up ({exc}):\n{self.lines.text()}") from None

    def generator_idle(self, limit_s: float) -> None:
        """Until the coordinator can give the stack's generator to a new run: every run in
        its record has ended (the coordinator holds a run's generators until then, after
        they beat "idle": an earlier test's run may still hold it) and the generator beats
        "idle" — watches of surge_runs and of the registry, with the context's user (cli)."""
        import asyncio
        import ssl

        import msgspec
        import nats

        from schemas import subjects
        from schemas.control import ENDED_STATES, Heartbeat, RunRecord
        from tests.events import kv_until

        ctx = contexts.load("local", {"XDG_CONFIG_HOME": str(self.config)})

        def idle(latest: dict) -> bool:
            beats = [msgspec.json.decode(v, type=Heartbeat) for v in latest.values() if v]
            return len(beats) == 1 and beats[0].state == "idle"

        async def watch() -> None:
            nc = await nats.connect(ctx.url, user=ctx.user, password=Path(ctx.password_file).read_text().strip(),
                                    tls=ssl.create_default_context(cafile=ctx.ca))
            try:
                def ended(latest: dict) -> bool:
                    return all(msgspec.json.decode(v, type=RunRecord).state in ENDED_STATES
                               for v in latest.values() if v)

                runs = await nc.jetstream().key_value(subjects.RUNS_BUCKET)
                await kv_until(runs, ">", ended, limit_s, "every run ended")
                kv = await nc.jetstream().key_value(subjects.GENERATORS_BUCKET)
                await kv_until(kv, ">", idle, limit_s, "the generator idle")
            finally:
                await nc.close()

        asyncio.run(watch())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # Ctrl-C
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                # the whole group: killing `surge up` alone left its nats-server and five
                # services running for half an hour after a loaded machine's slow Ctrl-C
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.lines.close()


@pytest.fixture(scope="module")
def up(tmp_path_factory) -> Up:
    stack = Up(tmp_path_factory.mktemp("up"))
    yield stack
    stack.stop()


def test_a_clean_shell_after_surge_up_reaches_the_secured_stack(up: Up, tmp_path):
    env = clean_env(up.config)
    done = surge("generators", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 1

    listed = json.loads(surge("context", "ls", "--json", env=env).stdout)
    assert [(c["name"], c["current"], c["url"], c["user"]) for c in listed] == [
        ("local", True, up.nats_url, "cli")]

    # `surge env` gives other shells and tools the same connection
    exports = surge("env", env=env).stdout
    assert f"export SURGE_NATS_URL={up.nats_url}" in exports
    assert "export NATS_CONTEXT=surge-local" in exports
    nats_ctx = json.loads((up.config / "nats" / "context" / "surge-local.json").read_text())
    password = (up.data / "secrets" / "cli.password").read_text().strip()
    assert (nats_ctx["url"], nats_ctx["user"], nats_ctx["password"]) == (up.nats_url, "cli", password)
    exported = dict(shlex.split(line)[1].split("=", 1) for line in exports.splitlines()
                    if line.startswith("export SURGE_"))
    elsewhere = clean_env(tmp_path / "empty-config", **exported)  # no context there
    done = surge("generators", "--json", env=elsewhere)
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 1, done.stderr


def test_wrong_ca_wrong_password_and_a_forbidden_subject_are_one_line_each(up: Up, tmp_path):
    env = clean_env(up.config)
    other_ca = secure.make_certificates(tmp_path / "other").ca
    line = one_line_error(surge("ls", "--ca", other_ca, env=env))
    assert line.startswith("error: TLS") and other_ca in line and "--ca" in line, line

    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-it\n")
    line = one_line_error(surge("ls", "--password-file", str(wrong), env=env))
    assert f"NATS at {up.nats_url} refused user 'cli'" in line, line

    generator_pw = str(up.data / "secrets" / "generator.password")
    started = startup_s(env)
    t0 = time.monotonic()
    line = one_line_error(surge("--user", "generator", "--password-file", generator_pw, "ls", env=env))
    assert "permission denied" in line and "surge.api.run.list" in line and "'generator'" in line, line
    assert time.monotonic() - t0 - started < 6

    # no CA at all for a TLS server: the system's store cannot know the local CA
    no_context = clean_env(tmp_path / "empty-config")
    line = one_line_error(surge("ls", "--nats", up.nats_url, env=no_context))
    assert "system's CA store" in line, line
    # the context's own server named again (copied from `surge context show`) keeps its CA
    done = surge("ls", "--nats", up.nats_url, env=env)
    assert done.returncode == 0, done.stderr
    # -v adds the details under the one line
    verbose = surge("ls", "--ca", other_ca, "-v", env=env)
    assert verbose.returncode == 2 and "details:" in verbose.stderr
    assert "Traceback" not in verbose.stderr


def test_flags_after_the_subcommand_act_as_before_it(up: Up, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({
        "name": "flags", "target": "http://127.0.0.1:1", "rate": 20, "duration": "1s",
        "requests": [{"name": "home", "method": "GET", "path": "/"}],
        "thresholds": {"error_rate": 0.0}}))
    env = clean_env(tmp_path / "empty-config")  # no context: the flags say everything
    flags = ["--nats", up.nats_url, "--user", "cli", "--password-file",
             str(up.data / "secrets" / "cli.password"), "--ca", str(up.data / "certs" / "ca.pem")]
    target = ["--target", f"http://127.0.0.1:{up.target_port}"]
    reports = []
    for argv in (["run", str(plan), *target, *flags], [*flags, "run", str(plan), *target]):
        out = tmp_path / f"report-{len(reports)}.json"
        done = surge(*argv, "--report", str(out), "--quiet", env=env, timeout_s=60)
        assert done.returncode == 0, done.stdout + done.stderr
        reports.append(json.loads(out.read_text()))
    assert [r["verdict"] for r in reports] == ["pass", "pass"]
    assert [r["totals"]["requests"] for r in reports] == [20, 20]


def test_surge_run_piped_to_head_ends_silently_when_head_does(up: Up, tmp_path):
    """`surge run plan | head -1`: the live lines are printed by a task; its failed write
    ends the command with 141 and no traceback (it was "Task exception was never retrieved")."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({
        "name": "piped", "target": f"http://127.0.0.1:{up.target_port}", "rate": 20,
        "duration": "4s", "requests": [{"name": "home", "method": "GET", "path": "/"}]}))
    proc = subprocess.Popen([PY, "-m", "services.cli", "run", str(plan)], cwd=ROOT,
                            env=clean_env(up.config), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "started" in proc.stdout.readline()  # `| head -1` reads this, then goes
        proc.stdout.close()
        assert proc.wait(20) == 141
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_surge_run_interrupted_stops_the_run_and_never_exits_as_a_pass(up: Up, tmp_path, sig):
    """Ctrl-C (or the SIGTERM of a cancelled CI job) stops the run and prints its report;
    the exit code is 128 + the signal, as documented ("130 interrupted"), not the verdict
    of the seconds that ran (it was 0: a run cut short read as a pass)."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({
        "name": "cut-short", "target": f"http://127.0.0.1:{up.target_port}", "rate": 5,
        "duration": "60s", "requests": [{"name": "home", "method": "GET", "path": "/"}]}))
    env = clean_env(up.config)
    up.generator_idle(30)
    proc = subprocess.Popen([PY, "-m", "services.cli", "run", str(plan)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "started" in proc.stdout.readline(), proc.stderr.read()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=40)
        assert proc.returncode == 128 + sig, (proc.returncode, out, err)
        assert "stopping the run" in out and "verdict" in out, out  # the report, as before
        assert "Traceback" not in out + err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_surge_up_piped_to_head_stops_its_whole_stack(tmp_path):
    """`surge up | head -1`: 141 like `surge run`, but through its cleanup: no process of
    the stack is left behind when its output has nowhere to go."""
    env = {**clean_env(tmp_path / "config"), "SURGE_UI_PORT": str(free_port())}
    proc = subprocess.Popen(
        [PY, "-m", "services.cli", "up", "--insecure", "--no-target", "--generators", "1",
         "--data-dir", str(tmp_path / "data"), "--nats", f"nats://127.0.0.1:{free_port()}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # its own session: every process of the stack is in it
    try:
        while "Surge is up" not in proc.stdout.readline():  # `head` reads, then goes
            assert proc.poll() is None, proc.stderr.read()
        proc.stdout.close()
        assert proc.wait(60) == 141
        assert "Traceback" not in proc.stderr.read()
        left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True)
        assert left.stdout.split() == [], left.stdout
    finally:
        try:  # whatever is left of the stack (its session and process group are proc.pid)
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        proc.stderr.close()


def test_no_nats_no_coordinator_and_a_silent_server_fail_fast_in_one_line(cluster: Cluster, tmp_path):
    config = tmp_path / "config"
    contexts.save(contexts.Context(name="here", url=cluster.url),
                  {"XDG_CONFIG_HOME": str(config)}, make_current=True)
    env = clean_env(config)

    line = one_line_error(surge("ls", env=env))  # nats-server up, nothing answers the API
    assert "no coordinator" in line and cluster.url in line and "context here" in line, line

    cluster.nats.stop()
    started = startup_s(env)
    t0 = time.monotonic()
    line = one_line_error(surge("ls", env=env))
    assert time.monotonic() - t0 - started < 6
    assert f"cannot reach NATS at {cluster.url}" in line and "surge up" in line, line

    with socket.socket() as silent:  # accepts connections, never says INFO
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"nats://127.0.0.1:{silent.getsockname()[1]}"
        started = startup_s(env)
        t0 = time.monotonic()
        line = one_line_error(surge("ls", "--nats", url, "--timeout", "1", env=env))
        assert time.monotonic() - t0 - started < 4  # --timeout 1 (not the default 5), then closing
        assert f"NATS at {url} did not answer in time" in line, line


def _operator_setup(tmp: Path) -> tuple[str, Path, Path]:
    """An operator-mode nats.conf (memory resolver) and two .creds files: a user of its
    account, and one signed by an account the server does not know. JWTs made here with
    nkeys, as `nsc` makes them."""
    import base64
    import hashlib

    import nkeys

    def keypair(prefix: int):
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        kp = nkeys.from_seed(seed)
        return kp, kp.public_key.decode(), seed.decode()

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def jwt(issuer, claims: dict) -> str:
        claims = {"iat": int(time.time()), **claims}
        digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
        claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
        signed = f"{b64(json.dumps({'typ': 'JWT', 'alg': 'ed25519-nkey'}).encode())}." \
                 f"{b64(json.dumps(claims).encode())}"
        return f"{signed}.{b64(issuer.sign(signed.encode()))}"

    def creds(account, account_pub: str, path: Path) -> Path:
        _, user_pub, seed = keypair(nkeys.PREFIX_BYTE_USER)
        token = jwt(account, {"iss": account_pub, "sub": user_pub, "name": "cli", "nats": {
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user",
            "version": 2}})
        path.write_text(f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
                        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n")
        return path

    operator, operator_pub, _ = keypair(nkeys.PREFIX_BYTE_OPERATOR)
    account, account_pub, _ = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    stranger, stranger_pub, _ = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    limits = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
              "wildcards": True, "conn": -1, "leaf": -1}
    conf = (f"operator: {jwt(operator, {'iss': operator_pub, 'sub': operator_pub, 'name': 'op', 'nats': {'type': 'operator', 'version': 2}})}\n"
            f"resolver: MEMORY\nresolver_preload: {{\n  {account_pub}: "
            f"{jwt(operator, {'iss': operator_pub, 'sub': account_pub, 'name': 'surge', 'nats': {'limits': limits, 'type': 'account', 'version': 2}})}\n}}\n")
    return conf, creds(account, account_pub, tmp / "cli.creds"), creds(stranger, stranger_pub,
                                                                       tmp / "stranger.creds")


def test_a_creds_file_connects_and_a_foreign_one_is_refused_in_one_line(tmp_path):
    """--creds (SURGE_NATS_CREDS) against a real operator-mode nats-server: it needs the
    nkeys package (it was "No module named 'nkeys'")."""
    from tests.conftest import NATS_SERVER, Proc

    conf, good, foreign = _operator_setup(tmp_path)
    (tmp_path / "nats.conf").write_text(conf)
    port = free_port()
    server = Proc("nats-operator", [NATS_SERVER, "-c", str(tmp_path / "nats.conf"), "-a", "127.0.0.1",
                                    "-p", str(port)], {}, tmp_path)
    try:
        server.lines.wait_said("Server is ready", 10)
        url = f"nats://127.0.0.1:{port}"
        env = clean_env(tmp_path / "empty-config")
        line = one_line_error(surge("ls", "--nats", url, "--creds", str(good), env=env))
        assert "no coordinator" in line, line  # connected: nobody answers the API there
        line = one_line_error(surge("ls", "--nats", url, "--creds", str(foreign), env=env))
        assert f"NATS at {url} refused the creds file" in line, line
    finally:
        server.stop()


def test_a_foreign_nats_server_is_recognised_as_one(cluster: Cluster):
    from services.cli.up import what_listens

    assert what_listens("127.0.0.1", cluster.port) == "a NATS server"


def test_surge_up_never_attaches_to_a_nats_it_did_not_start(tmp_path, monkeypatch):
    from argparse import Namespace

    from rich.console import Console
    from schemas.errors import Unavailable
    from services.cli import up as up_module

    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen(8)
        busy = foreign.getsockname()[1]
        monkeypatch.setattr(up_module, "DEFAULT_NATS_URL", f"nats://127.0.0.1:{busy}")

        def stack(nats: str | None):
            args = Namespace(nats=nats, data_dir=str(tmp_path / "data"), no_target=True,
                             target_port=0, insecure=True, generators=1)
            console = Console(file=open(tmp_path / "out.txt", "w"), width=300)
            return up_module.Stack(args, console), args

        s, args = stack(None)  # the default port is taken: our own on a free one, said so
        s.claim_ports()
        s.console.file.close()
        assert args.nats != f"nats://127.0.0.1:{busy}"
        said = (tmp_path / "out.txt").read_text()
        assert f"port {busy} is held by another program that this stack did not start" in said
        assert f"starting our own NATS on {args.nats}" in said
        s.stop()  # releases stack.json

        s, args = stack(f"nats://127.0.0.1:{busy}")  # a port the user named: stop, say why
        with pytest.raises(Unavailable, match="never attaches"):
            s.claim_ports()

    # another `surge up` from the same directory is still running
    (tmp_path / "data" / "stack.json").write_text(json.dumps({"pid": os.getppid(), "nats": "x"}))
    s, _ = stack(None)
    with pytest.raises(Unavailable, match="already runs from"):
        s.claim_ports()


def test_the_ui_started_by_hand_uses_the_current_context(up: Up, tmp_path):
    import urllib.error
    import urllib.request

    port = free_port()
    ui, lines = piped([PY, "-m", "services.ui"], tmp_path / "ui.log", cwd=ROOT,
                      env=clean_env(up.config, SURGE_UI_PORT=str(port)))
    try:
        lines.wait_said("listening", 20)  # it listens once it has joined the secured bus
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/generators", timeout=5) as r:
                body = json.loads(r.read())
        except urllib.error.URLError as exc:  # HTTPError too
            body = {"refused": str(exc)}
        gens = body.get("generators", []) if isinstance(body, dict) else body
        assert len(gens) == 1, (body, lines.text())
    finally:
        ui.terminate()
        ui.wait(10)
        lines.close()
