"""`surge init` writes a plan that validates; `surge completion` completes in a real bash."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.cli.__main__ import parse, parser, run_command
from services.cli.starter import bash_script
from services.common import contexts
from services.plan import loader
from tests.conftest import ROOT


def _init(*argv: str) -> int:
    from rich.console import Console

    return run_command(parse(["init", *argv]), Console(file=open(os.devnull, "w")))


def test_init_writes_a_commented_plan_that_validates(tmp_path):
    path = tmp_path / "Checkout Flow.yaml"
    assert _init(str(path), "--target", "http://127.0.0.1:8080/") == 0
    text = path.read_text()
    assert text.count("#") > 10 and "--vus" in text and "stages:" in text
    plan = loader.load(str(path))
    assert (plan.name, plan.target, plan.rate, plan.duration) == (
        "checkout-flow", "http://127.0.0.1:8080", 50, 30)


def test_init_refuses_a_bad_target_and_an_existing_file(tmp_path):
    from schemas.errors import Conflict, InvalidPlan

    path = tmp_path / "plan.yaml"
    with pytest.raises(InvalidPlan, match="not http"):
        _init(str(path), "--target", "ftp://x")
    with pytest.raises(InvalidPlan, match="only an origin"):
        _init(str(path), "--target", "http://x/api")
    assert not path.exists()
    assert _init(str(path), "--target", "http://x:81") == 0
    with pytest.raises(Conflict):
        _init(str(path), "--target", "http://x:81")
    assert _init(str(path), "--target", "https://y", "--force") == 0
    assert loader.load(str(path)).target == "https://y"


@pytest.mark.timeout(20)
def test_init_asks_for_the_target_on_a_terminal(tmp_path):
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "init", str(tmp_path / "p.yaml")],
                            cwd=ROOT, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    os.close(slave)
    os.write(master, b"127.0.0.1:8080\n")
    out, err = proc.communicate(timeout=15)
    os.close(master)
    assert proc.returncode == 0, err
    assert "Target" in out and loader.load(str(tmp_path / "p.yaml")).target == "http://127.0.0.1:8080"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("typed", [b"\x04", b"\n"])  # Ctrl-D, Enter
def test_init_given_nothing_at_the_prompt_says_so_in_one_line(tmp_path, typed):
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "init", str(tmp_path / "p.yaml")],
                            cwd=ROOT, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    os.close(slave)
    os.write(master, typed)
    out, err = proc.communicate(timeout=15)
    os.close(master)
    assert proc.returncode == 2, err
    assert err.strip() == ("error bad_request: surge init needs the target: --target "
                           "http[s]://host[:port] (field: target)"), err
    assert not (tmp_path / "p.yaml").exists()


def _complete(words: list[str]) -> list[str]:
    script = bash_script(parser())
    line = " ".join(words)
    shell = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _surge; "
             'printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion_offers_commands_then_their_flags():
    assert {"context", "completion"} <= set(_complete(["surge", "co"]))
    assert "run" in _complete(["surge", "--nats", "nats://x:1", "r"])
    run_flags = _complete(["surge", "run", "plan.yaml", "--"])
    assert {"--vus", "--target", "--rate", "--nats", "--timeout"} <= set(run_flags)
    assert set(_complete(["surge", "context", ""])) >= {"ls", "use", "show", "add"}
    assert _complete(["surge", "completion", "z"]) == ["zsh"]


def test_bash_completion_leaves_file_names_to_bash_and_knows_context_names(tmp_path, monkeypatch):
    # an empty answer lets `complete -o default` offer file names: the plan after `run`
    for words in (["surge", "run", ""], ["surge", "validate", "pl"], ["surge", "import", "har", ""],
                  ["surge", "--nats", "nats://x:1", "run", ""], ["surge", "init", ""]):
        assert _complete(words) == [], words
    assert "complete -o default -F _surge surge" in bash_script(parser())
    config = tmp_path / "config"
    for name in ("local", "staging"):
        contexts.save(contexts.Context(name=name, url="nats://127.0.0.1:4333"),
                      {"XDG_CONFIG_HOME": str(config)})
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))  # the bash below inherits it
    for cmd in ("context", "ctx"):
        assert _complete(["surge", cmd, "use", ""]) == ["local", "staging"]
        assert _complete(["surge", "--json", cmd, "show", "s"]) == ["staging"]
        assert _complete(["surge", cmd, "u"]) == ["use"]
    assert _complete(["surge", "--context", "l"]) == ["local"]


def test_zsh_completion_wraps_the_bash_one():
    from rich.console import Console
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_command(parse(["completion", "zsh"]), Console(file=io.StringIO())) == 0
    assert out.getvalue().startswith("#compdef surge") and "bashcompinit" in out.getvalue()
    assert "complete -o default -F _surge surge" in out.getvalue()
