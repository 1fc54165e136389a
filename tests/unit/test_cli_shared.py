"""What the CLI's commands share: a listing as one JSON line or as a table."""

from __future__ import annotations

import io
import json

from rich.console import Console

from services.cli.shared import listing


def test_a_listing_is_one_json_line_or_a_table_titled_by_its_count(capsys):
    items = [{"name": "checkout", "n": 2}, {"name": "search", "n": 1}]
    console = Console(file=io.StringIO(), width=60)
    assert listing(console, True, items, "test", ("name", "n"), lambda i: (i["name"], str(i["n"]))) == 0
    assert json.loads(capsys.readouterr().out) == items
    assert console.file.getvalue() == ""

    assert listing(console, False, items, "test", ("name", "n"), lambda i: (i["name"], str(i["n"]))) == 0
    lines = console.file.getvalue().splitlines()
    assert capsys.readouterr().out == ""
    assert lines[0].strip() == "2 test(s)"
    assert [line.split()[1:4] for line in lines if "checkout" in line or "search" in line] == [
        ["checkout", "│", "2"], ["search", "│", "1"]]
