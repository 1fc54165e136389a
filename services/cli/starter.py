"""``surge init`` (a commented starter plan, like ``k6 new``) and ``surge completion``."""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.text import Text

from schemas.errors import BadRequest, Conflict
from services.cli.commands import check_target
from services.cli.registry import COMMANDS, GLOBAL_OPTIONS, arg, command
from services.plan import loader

STARTER = """\
# {name}: a Surge plan. `surge validate {path}` checks it; `surge run {path}` runs it.
# Every field: plans/checkout.yaml; user flows, data and virtual users: docs/scenarios.md.
name: {name}
target: {target}           # the origin; request paths below are relative to it

# Open model: requests arrive at this total rate across every generator, whatever
# the latency (the wrk2 way, coordinated-omission correct). Or use stages to ramp:
rate: 50                  # requests/s (override: surge run {path} --rate 200)
duration: 30s             # 500ms, 30s, 2m, 1h (override: --duration 2m)
# stages:
#   - {{duration: 30s, target: 200}}   # ramp to 200/s
#   - {{duration: 1m, target: 200}}    # hold
# Closed model instead (k6's VUs, JMeter's threads): `users: 10` and no rate
# (override: surge run {path} --vus 10).

connections: 32           # per generator: the most requests in flight
timeout: 5s               # a request slower than this is an error

requests:                 # one is picked by weight for each arrival
  - name: home
    method: GET
    path: /
    weight: 3
    checks: {{status: 200}}
  # - name: order
  #   method: POST
  #   path: /api/orders
  #   json: {{sku: A1, qty: 1}}
  #   checks: {{status: 201, body_contains: accepted}}

# The verdict: `surge run` exits 1 when one of these fails (a CI job fails with it).
thresholds:
  p99_ms: 500             # 99th percentile latency, whole run
  error_rate: 0.01        # at most 1% errors (status >= 400, timeouts, failed checks)
"""


def _name_from(path: str) -> str:
    stem = Path(path).stem.lower()
    return re.sub(r"[^a-z0-9_.-]+", "-", stem).strip("-") or "my-test"


def _ask_target(console: Console) -> str:
    if not sys.stdin.isatty():
        raise BadRequest("surge init needs the target: --target http[s]://host[:port]", "target")
    prompt = Text("Target (the origin under test, e.g. http://127.0.0.1:8080): ")  # not highlighted
    try:
        answer = console.input(prompt).strip()
    except EOFError:  # Ctrl-D at the prompt
        answer = ""
    if not answer:
        raise BadRequest("surge init needs the target: --target http[s]://host[:port]", "target")
    if answer and "://" not in answer:
        answer = "http://" + answer
    return answer


def _answers(target: str) -> bool:
    parts = urlsplit(target)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=1):
            return True
    except OSError:
        return False


@command("init", help="write a commented starter plan (like `k6 new`)",
         example="surge init\nsurge init checkout.yaml --target http://127.0.0.1:8080",
         args=[arg("path", nargs="?", default="plan.yaml", help="where to write it (default plan.yaml)"),
               arg("--target", metavar="URL", help="the origin under test; asked when not given"),
               arg("--force", action="store_true", help="overwrite an existing file")])
def init(args: argparse.Namespace, console: Console) -> int:
    if os.path.exists(args.path) and not args.force:
        raise Conflict(f"{args.path} exists; --force overwrites it, or give another path", "path")
    target = check_target(args.target or _ask_target(console))
    text = STARTER.format(name=_name_from(args.path), target=target, path=args.path)
    plan = loader.loads(text)  # the starter must itself be a valid plan
    with open(args.path, "w", encoding="utf-8") as f:
        f.write(text)
    console.print(f"[green]wrote[/] {args.path}: plan [bold]{plan.name}[/] → {plan.target}, "
                  f"{plan.rate:g}/s for {plan.duration:g}s", highlight=False)
    if not _answers(target):
        console.print(f"[yellow]note:[/] nothing answers at {target} yet", highlight=False)
    console.print(f"next: surge validate {args.path} && surge run {args.path}", highlight=False)
    return 0


# -- shell completion ---------------------------------------------------------------

_BASH = """\
# surge completion for bash: source <(surge completion bash), or save it under
# ~/.local/share/bash-completion/completions/surge
_surge_contexts() {{
    ls "${{XDG_CONFIG_HOME:-$HOME/.config}}/surge/contexts" 2>/dev/null | sed 's/[.]json$//'
}}
_surge() {{
    local cur prev cmd first npos words choices i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    cmd="" first="" npos=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
{value_cases}) ((i++)) ;;
            -*) ;;
            *) if [[ -z "$cmd" ]]; then cmd="${{COMP_WORDS[i]}}"
               else ((npos++)); [[ -n "$first" ]] || first="${{COMP_WORDS[i]}}"; fi ;;
        esac
    done
    case "$prev" in
{file_cases}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --context) COMPREPLY=($(compgen -W "$(_surge_contexts)" -- "$cur")); return ;;
    esac
    if [[ -z "$cmd" ]]; then
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "{global_flags} --version --help" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "{commands}" -- "$cur"))
        fi
        return
    fi
    case "$cmd" in
{command_cases}
    esac
    # flags after a dash; a command's first word from its choices; a context's name after
    # `context use|show|rm`; else nothing, and `-o default` completes a file name (a plan)
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    elif ((npos == 0)) && [[ -n "$choices" ]]; then
        COMPREPLY=($(compgen -W "$choices" -- "$cur"))
    elif [[ "$cmd" == context || "$cmd" == ctx ]] && ((npos == 1)) && [[ "$first" =~ ^(use|show|rm)$ ]]; then
        COMPREPLY=($(compgen -W "$(_surge_contexts)" -- "$cur"))
    fi
}}
complete -o default -F _surge surge
"""

_ZSH = """\
#compdef surge
# surge completion for zsh: source <(surge completion zsh), or save it as _surge in $fpath
autoload -U +X bashcompinit && bashcompinit
{bash}"""


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({s for a in parser._actions for s in a.option_strings})


def _takes_value(a: argparse.Action) -> bool:
    return a.nargs != 0 and bool(a.option_strings)


def bash_script(parser: argparse.ArgumentParser) -> str:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    global_flags = sorted({f for a in GLOBAL_OPTIONS for f in a.flags})
    value_flags = sorted({s for a in parser._actions if _takes_value(a) for s in a.option_strings})
    file_flags = {"--ca", "--tlsca", "--password-file", "--creds", "--report", "--junit", "--html",
                  "-o", "--output"}
    cases = []
    for name, cmd in COMMANDS.items():
        p = sub.choices[name]
        words = _flags(p)
        choices = [c for a in p._actions if not a.option_strings and a.choices for c in a.choices]
        cases.append(f'        {"|".join((name, *cmd.aliases))}) words="{" ".join(words)}" '
                     f'choices="{" ".join(choices)}" ;;')
        value_flags += [s for a in p._actions if _takes_value(a) for s in a.option_strings]
    value_flags = sorted(set(value_flags) - {"-h", "--help"})
    return _BASH.format(
        value_cases="            " + "|".join(value_flags),
        file_cases="        " + "|".join(sorted(file_flags)),
        global_flags=" ".join(global_flags), commands=" ".join(COMMANDS),
        command_cases="\n".join(cases),
    )


@command("completion", help="print shell completion for bash or zsh",
         example="surge completion bash > ~/.local/share/bash-completion/completions/surge\n"
                 "source <(surge completion bash)\n"
                 "surge completion zsh > \"${fpath[1]}/_surge\"",
         args=[arg("shell", choices=["bash", "zsh"])])
def completion(args: argparse.Namespace, console: Console) -> int:
    from services.cli.__main__ import parser

    script = bash_script(parser())
    sys.stdout.write(script if args.shell == "bash" else _ZSH.format(bash=script))
    return 0
