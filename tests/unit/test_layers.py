"""Imports flow one way (docs/design.md, "Layers"):

    schemas/ → services/common/ → services/plan/ → services/reports/ → the services

``schemas`` is pure data: the standard library and msgspec only. A service package
(coordinator, generator, monitor, ui, cli, target) never imports another; what two of
them share moves down a layer. Every import counts, also those inside functions and
under ``TYPE_CHECKING``: a lazy import is still an edge a reader has to follow.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# layer -> the first-party layers it may import (besides itself)
LOWER = {
    "schemas": set(),
    "services.common": {"schemas"},
    "services.plan": {"schemas", "services.common"},
    "services.reports": {"schemas", "services.common", "services.plan"},
}
SERVICES = {"coordinator", "generator", "monitor", "ui", "cli", "target"}
SERVICE_MAY = {"schemas", "services.common", "services.plan", "services.reports"}
# the container's one entrypoint runs any service by name (runpy, not import)
TOP = {"services.entrypoint", "services"}


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "schemas":
        return "schemas"
    if parts[0] != "services":
        return None
    if module in TOP:
        return module
    return ".".join(parts[:2])


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """Every absolute first-party module ``path`` imports, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
            # `from services import plan` names a package, not an attribute
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names
                      if base in ("services", "schemas")]
    return [(n, m) for n, m in found if m.split(".")[0] in ("schemas", "services")
            and m not in ("services", "schemas")]


def _edges() -> list[tuple[str, int, str, str]]:
    """(file, line, importing layer, imported layer) for every first-party import."""
    edges = []
    for top in ("schemas", "services"):
        for path in sorted((ROOT / top).rglob("*.py")):
            module = _module_of(path)
            src = _layer(module)
            for line, target in _imports(path, module):
                dst = _layer(target)
                if dst and dst != src:
                    edges.append((str(path.relative_to(ROOT)), line, src, dst))
    return edges


def _allowed(src: str, dst: str) -> bool:
    if src in TOP:
        return True
    if src in LOWER:
        return dst in LOWER[src]
    if src.split(".")[1] in SERVICES:
        return dst in SERVICE_MAY
    return False


def test_every_import_goes_down_a_layer():
    bad = [f"{f}:{line}: {src} imports {dst}" for f, line, src, dst in _edges()
           if not _allowed(src, dst)]
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_every_services_package_has_a_layer():
    # a new package must be placed in LOWER or SERVICES, not slip past the rules above
    packages = {p.name for p in (ROOT / "services").iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    unknown = packages - SERVICES - {k.split(".")[1] for k in LOWER if "." in k}
    assert not unknown, f"packages with no layer in this test: {sorted(unknown)}"


def test_schemas_use_only_stdlib_and_msgspec():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = []
    for path in sorted((ROOT / "schemas").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in stdlib and top not in ("msgspec", "schemas"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not bad, "schemas/ must stay pure data:\n" + "\n".join(bad)


def test_the_walk_sees_a_forbidden_edge(tmp_path):
    # the checker itself must be able to fail: a lazy import inside a function counts
    src = tmp_path / "services" / "generator" / "x.py"
    src.parent.mkdir(parents=True)
    src.write_text("def f():\n    from services.coordinator import slicing\n")
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        (tmp_path / "schemas").mkdir()
        edges = _edges()
    finally:
        ROOT = old
    assert edges == [("services/generator/x.py", 2, "services.generator", "services.coordinator")]
    assert not _allowed("services.generator", "services.coordinator")


def test_every_module_imports():
    # a moved module leaves no dangling import behind (a lazy one would only fail at run time)
    import importlib

    failed = []
    for top in ("schemas", "services"):
        for path in sorted((ROOT / top).rglob("*.py")):
            module = _module_of(path)
            if module.endswith("__main__"):
                continue
            try:
                importlib.import_module(module)
            except Exception as e:  # noqa: BLE001 - every failure is reported, not the first
                failed.append(f"{module}: {type(e).__name__}: {e}")
    assert not failed, "\n".join(failed)
