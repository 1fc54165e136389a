"""The ``surge`` command line: global flags anywhere, help with examples, --version."""

from __future__ import annotations

import pytest

from services.cli import registry
from services.cli.__main__ import parse, parser
from tests.conftest import ROOT, free_port


def test_global_flags_work_before_or_after_the_subcommand():
    before = parse(["--nats", "nats://h:1", "--timeout", "2", "-v", "--json", "ls", "--limit", "3"])
    after = parse(["ls", "--limit", "3", "--nats", "nats://h:1", "--timeout", "2", "-v", "--json"])
    for args in (before, after):
        assert (args.nats, args.timeout, args.verbose, args.json, args.limit) == (
            "nats://h:1", 2.0, 1, True, 3)
    run_before = parse(["--nats", "nats://h:1", "run", "plan.yaml"])
    run_after = parse(["run", "plan.yaml", "--nats", "nats://h:1"])
    assert vars(run_before) == vars(run_after)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_a_timeout_that_cannot_be_waited_for_is_refused_by_the_parser(value, capsys):
    with pytest.raises(SystemExit) as done:
        parse(["ls", "--timeout", value])
    assert done.value.code == 2 and "--timeout" in capsys.readouterr().err
    assert parse(["ls", "--timeout", "0.5"]).timeout == 0.5


def test_a_usage_error_under_json_is_a_json_error_on_stdout_too(capsys):
    import json

    for argv in (["ls", "--limit", "x", "--json"], ["--json", "context", "nope"],
                 ["--json", "test", "save"]):
        with pytest.raises(SystemExit) as done:
            parse(argv)
        out, err = capsys.readouterr()
        assert done.value.code == 2 and "usage:" in err, argv
        assert json.loads(out)["error"]["code"] == "bad_request", argv
    with pytest.raises(SystemExit):
        parse(["ls", "--limit", "x"])
    assert capsys.readouterr().out == ""


def test_unset_global_flags_take_their_defaults():
    args = parse(["generators"])
    assert (args.nats, args.user, args.timeout, args.verbose, args.json) == (None, None, 5.0, 0, False)
    # a value given before the subcommand survives the subcommand's own (unset) copy
    assert parse(["--user", "cli", "generators"]).user == "cli"


def test_every_subcommand_has_help_with_an_example(capsys):
    parser()  # imports every command module
    assert {"run", "validate", "stop", "rate", "ls", "generators", "report", "up", "import"} <= set(
        registry.COMMANDS)
    for name, cmd in registry.COMMANDS.items():
        assert cmd.example.startswith("surge "), name
        with pytest.raises(SystemExit) as done:
            parse([name, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert "example:\n  surge " in out and "--nats" in out, name


def test_version_comes_from_the_package_metadata(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit):
        parse(["--version"])
    assert capsys.readouterr().out.strip() == f"surge {metadata.version('surge')}"


def test_a_command_registered_twice_is_refused():
    parser()
    with pytest.raises(ValueError):
        registry.command("ls", help="again", example="surge ls")(lambda args, console: 0)


async def test_a_read_after_a_run_rides_out_a_coordinator_handover():
    from schemas.errors import NotLeader, Unavailable
    from services.cli.commands import _through_handover

    answers = [Unavailable("no coordinator is answering"), NotLeader("standby"), b"report"]

    async def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await _through_handover(call, 5.0) == b"report"

    async def never():
        raise Unavailable("no coordinator is answering")

    with pytest.raises(Unavailable):
        await _through_handover(never, 0.3)


def test_run_overrides_target_and_vus_like_k6():
    from schemas.errors import InvalidPlan
    from services.cli.commands import with_overrides
    from services.plan import loader

    staged = loader.load(str(ROOT / "plans" / "demo.yaml"))  # open model, stages
    plan = with_overrides(staged, users=5, duration=12.0, target="http://127.0.0.1:9/")
    assert (plan.users, plan.duration, plan.stages, plan.target) == (5, 12.0, None, "http://127.0.0.1:9")
    assert plan.model == "closed"
    kept = with_overrides(staged, users=3)  # the plan's own length
    assert (kept.users, kept.duration) == (3, 30.0)
    with pytest.raises(InvalidPlan, match="exclude each other"):
        with_overrides(staged, users=3, rate=10)
    with pytest.raises(InvalidPlan, match="only an origin"):
        with_overrides(staged, target="http://127.0.0.1:9/api")
    args = parse(["run", "p.yaml", "--users", "7", "--target", "http://x:1"])
    assert (args.vus, args.target) == (7, "http://x:1")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("argv", [["context", "ls"], ["context", "ls", "--json"],
                                  ["completion", "bash"], ["context", "show", "nope", "--json"]])  # the last: its one line stays
def test_a_reader_that_went_away_ends_the_command_silently_with_141(tmp_path, argv):
    """`surge ... | head -c0`: no traceback and not exit 1 (which says "thresholds failed")."""
    import os
    import subprocess
    import sys

    from services.common import contexts

    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    contexts.save(contexts.Context(name="local", url="nats://127.0.0.1:4333", user="cli"),
                  environ, make_current=True)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run([sys.executable, "-m", "services.cli", *argv], cwd=ROOT,
                              env={"PATH": os.environ["PATH"], **environ}, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=20)
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 1, done.stderr


def test_surge_up_prints_a_surge_command_that_runs_from_where_it_was_started(tmp_path):
    """`make run` (the repository): .venv/bin/surge; an activated venv: surge; elsewhere
    (it printed .venv/bin/surge, which is not there): the absolute path."""
    import sys
    from pathlib import Path

    from services.cli.up import surge_command

    mine = Path(sys.executable).parent / "surge"
    assert mine.exists()
    home = mine.parents[2]  # the directory holding the venv (the repository for make run)
    assert surge_command({"PATH": "/usr/bin:/bin"}, str(home)) == str(mine.relative_to(home))
    assert surge_command({"PATH": f"{mine.parent}:/usr/bin"}, str(tmp_path)) == "surge"
    assert surge_command({"PATH": "/usr/bin:/bin"}, str(tmp_path)) == str(mine)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("module", ["rich", "nats", "services.cli.catalogue"])
def test_ctrl_c_while_the_cli_loads_is_130_without_a_traceback(module):
    """Ctrl-C while Python imports the CLI (a second or more on a busy machine) printed a
    KeyboardInterrupt traceback from an import. A real SIGINT, sent by the process to itself
    as it starts to import ``module`` (the CLI's own imports, then parse()'s)."""
    import os
    import subprocess
    import sys

    code = f"""
import importlib.abc, os, signal, sys
class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, Interrupt())
sys.argv = ["surge", "ls"]
from services.cli.entry import main
main()
"""
    # a closed port, not the default 4222: on a shared machine something may listen there
    # (a `surge up` with TLS made `ls` fail on its certificate before the interrupt told)
    env = {**os.environ, "SURGE_NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=50, env=env)
    assert (done.returncode, done.stderr) == (130, ""), done.stderr
