"""``Run`` behind a port: runs.py and recovery.py see a ``RunStore`` and a ``Fleet``, never
the coordinator's ``Service``, and recovery reaches into no private member of a run."""

from __future__ import annotations

import ast
from pathlib import Path

COORDINATOR = Path(__file__).resolve().parents[2] / "services" / "coordinator"


def _tree(name: str) -> ast.AST:
    return ast.parse((COORDINATOR / name).read_text())


def test_runs_and_recovery_never_import_the_service():
    for name in ("runs.py", "control.py", "membership.py", "reporting.py", "recovery.py", "store.py"):
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "services.coordinator.service", name


def test_recovery_touches_no_private_member_of_a_run():
    private = [node.attr for node in ast.walk(_tree("recovery.py"))
               if isinstance(node, ast.Attribute) and node.attr.startswith("_")]
    assert private == []


def test_a_run_is_built_by_create_or_recover_only():
    calls = []
    for name in ("service.py", "recovery.py"):
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Run":
                calls.append(name)
    assert calls == []
