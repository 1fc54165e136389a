"""Data files read as people save them (services/plan/loader.py ``read_rows``)."""

from __future__ import annotations

import pytest

from schemas.errors import InvalidPlan
from services.plan import loader

ROWS = [{"username": "ann", "password": "s,1"}, {"username": "bob", "password": 'say "hi"\nbye'}]
CSV = 'username,password\nann,"s,1"\nbob,"say ""hi""\nbye"\n'


@pytest.mark.parametrize("data", [
    CSV.encode(),                                        # UTF-8, LF
    CSV.replace("\n", "\r\n").encode(),                  # CRLF (the newline inside a field too)
    b"\xef\xbb\xbf" + CSV.replace("\n", "\r\n").encode(),  # Excel's "CSV UTF-8": BOM + CRLF
    CSV.encode() + b"\n\n",                              # empty last lines
    CSV.rstrip("\n").encode(),                           # no newline at the end
    CSV.encode("utf-16"),                                # Excel's "Unicode text": UTF-16 with BOM
], ids=["lf", "crlf", "bom-crlf", "empty-last-lines", "no-last-newline", "utf16-bom"])
def test_csv_as_people_save_it(tmp_path, data):
    path = tmp_path / "users.csv"
    path.write_bytes(data)
    rows = loader.read_rows(str(path))
    assert [r["username"] for r in rows] == ["ann", "bob"]
    assert rows[0]["password"] == "s,1"
    assert rows[1]["password"].replace("\r\n", "\n") == 'say "hi"\nbye'


def test_a_plan_with_a_bom_crlf_file_sets_its_variables(tmp_path):
    (tmp_path / "users.csv").write_bytes(b"\xef\xbb\xbfusername,password\r\nann,secret\r\n")
    (tmp_path / "p.yaml").write_text(
        "name: p\ntarget: http://127.0.0.1:1\nusers: 1\nduration: 1s\ndata: [{file: users.csv}]\n"
        "flows: [{name: f, steps: [{path: '/login?u={{username}}&p={{password}}'}]}]\n")
    plan = loader.load(str(tmp_path / "p.yaml"))
    assert plan.data[0].rows == [{"username": "ann", "password": "secret"}]


def test_another_encoding_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "users.csv"
    path.write_bytes("username,password\nann,secret\nrené,x\n".encode("latin-1"))
    with pytest.raises(InvalidPlan) as err:
        loader.read_rows(str(path), "data.0.file")
    assert f"{path}:3: not UTF-8 text (byte 0xe9 at column 4)" in err.value.message
    assert err.value.field == "data.0.file"


def test_a_short_row_names_its_line(tmp_path):
    path = tmp_path / "users.csv"
    path.write_bytes(b"a,b\n1,2\n\n3\n")
    with pytest.raises(InvalidPlan, match=r"users.csv:4: 1 values for 2 columns"):
        loader.read_rows(str(path))


def test_columns_delimiter_skip_first_line_and_unquoted(tmp_path):
    path = tmp_path / "users.csv"
    path.write_bytes(b'user;pass\r\nann;"x;y"\r\n')
    assert loader.read_rows(str(path), columns=["u", "p"], delimiter=";", skip_first_line=True) == [
        {"u": "ann", "p": "x;y"}]
    path.write_bytes(b'user,pass\nann,"x\n')  # JMeter's quotedData=false: quotes are text
    assert loader.read_rows(str(path), columns=["u", "p"], quoted=False) == [
        {"u": "user", "p": "pass"}, {"u": "ann", "p": '"x'}]


def test_json_lines_as_people_save_them(tmp_path):
    path = tmp_path / "users.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"username": "ann"}\r\n\r\n{"username": "b\xe2\x80\xa8ob"}\r\n')
    assert loader.read_rows(str(path)) == [{"username": "ann"}, {"username": "b\u2028ob"}]
    path.write_bytes(b'{"username": "ann"}\n{"username": \n')
    with pytest.raises(InvalidPlan, match=r"users.jsonl:2: not JSON"):
        loader.read_rows(str(path))
    arr = tmp_path / "users.json"
    arr.write_bytes(b'[{"username": "ann"}, {"username": "bob"}]')
    assert [r["username"] for r in loader.read_rows(str(arr))] == ["ann", "bob"]
