"""The generator's readiness file (SURGE_READY_FILE), the Kubernetes readiness probe's `test -f`."""

from __future__ import annotations

from pathlib import Path

from services.generator.config import Config
from services.generator.ready import mark_not_ready, mark_ready


def test_mark_ready_writes_the_file_and_mark_not_ready_removes_it(tmp_path: Path):
    path = tmp_path / "surge-ready"
    mark_ready(str(path))
    assert path.is_file()
    assert not (tmp_path / "surge-ready.tmp").exists()
    mark_ready(str(path))  # again: still there, no error
    assert path.is_file()
    mark_not_ready(str(path))
    assert not path.exists()
    mark_not_ready(str(path))  # already gone: no error


def test_empty_path_is_off(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mark_ready("")
    mark_not_ready("")
    assert list(tmp_path.iterdir()) == []


def test_config_reads_surge_ready_file():
    assert Config.from_env({}).ready_file == ""
    assert Config.from_env({"SURGE_READY_FILE": "/tmp/surge-ready"}).ready_file == "/tmp/surge-ready"
