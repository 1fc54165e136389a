"""curl → plan: the forms people paste, each compared with what curl 7.88 sends.

The expected bodies here were taken from the real curl sending to a recording server
(tests/integration/test_import_oracles.py runs that comparison itself).
"""

from __future__ import annotations

import pytest

from services.plan import loader
from services.plan.importers import curl, shell
from tests.forms import multipart


def one(command: str, base_dir: str = ".") -> tuple[dict, list[str]]:
    imp = curl.convert(command, base_dir=base_dir)
    return imp.plan["flows"][0]["steps"][0], imp.unmapped


def test_data_urlencode_encodes_as_curl_does_and_says_nothing_is_lost():
    step, unmapped = one("curl http://h/a --data-urlencode 'param=mp+8/ay70X' --data-urlencode 'q=a b&c'")
    assert step["body"] == "param=mp%2B8%2Fay70X&q=a+b%26c"
    assert step["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert unmapped == []


def test_data_urlencode_every_form(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"line1\r\nline2 a+b&c\n")
    step, _ = one("curl http://h/b --data-urlencode '=a b=c' --data-urlencode 'x y' "
                  "--data-urlencode @f.txt --data-urlencode n@f.txt --data-urlencode 'a@b=c'",
                  str(tmp_path))
    assert step["body"] == ("a+b%3Dc&x+y&line1%0D%0Aline2+a%2Bb%26c%0A"
                            "&n=line1%0D%0Aline2+a%2Bb%26c%0A&a@b=c")


def test_data_at_file_strips_newlines_data_binary_keeps_them(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"line1\r\nline2\n")
    assert one("curl http://h/ -d @f.txt -d z=1", str(tmp_path))[0]["body"] == "line1line2&z=1"
    assert one("curl http://h/ --data-binary @f.txt", str(tmp_path))[0]["body"] == "line1\r\nline2\n"
    assert one("curl http://h/ --data-raw @f.txt", str(tmp_path))[0]["body"] == "@f.txt"


def test_get_moves_data_to_the_query():
    step, _ = one("curl -G 'http://h/e?x=1' -d a=1 --data-urlencode 'b=c d'")
    assert (step["method"], step["path"]) == ("GET", "/e?x=1&a=1&b=c+d") and "body" not in step


def test_json_pieces_join_without_separator_and_set_both_headers():
    step, _ = one("""curl http://h/f --json '{"a":1}' --json '{"b":2}'""")
    assert step["body"] == '{"a":1}{"b":2}'
    assert step["headers"] == {"Content-Type": "application/json", "Accept": "application/json"}


def test_form_builds_curls_multipart(tmp_path):
    (tmp_path / "h.txt").write_bytes(b"hello\n")
    step, unmapped = one("curl http://h/g -F a=1 -F f=@h.txt -F 'g=<h.txt' "
                         "-F 'k=@h.txt;type=text/x-foo;filename=zz.bin'", str(tmp_path))
    b = curl.BOUNDARY
    assert step["headers"]["Content-Type"] == f"multipart/form-data; boundary={b}"
    assert step["body"] == multipart(b, ("a", "1"), ("f", "hello\n", "h.txt", "text/plain"),
                                     ("g", "hello\n"), ("k", "hello\n", "zz.bin", "text/x-foo"))
    assert unmapped == []


def test_binary_file_is_listed_not_sent_wrong(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"\xff\x00\xfe")
    imp = curl.convert("curl http://h/a\ncurl http://h/z --data-binary @b.bin", base_dir=str(tmp_path))
    assert [s["path"] for s in imp.plan["flows"][0]["steps"]] == ["/a"]
    assert any("not UTF-8" in u for u in imp.unmapped)


def test_headers_user_cookie_method_and_short_options():
    step, unmapped = one("curl -sSL -XPUT http://h/h -b 'a=1; b=2' -H 'X-A: 1' -H 'X-A: 2' "
                         "-u u:p -d q -k")
    assert step["method"] == "PUT" and step["body"] == "q"
    assert step["headers"]["Cookie"] == "a=1; b=2"
    assert step["headers"]["X-A"] == "1, 2" and any("X-A given twice" in u for u in unmapped)
    assert step["headers"]["Authorization"] == "Basic dTpw"


def test_bash_quoting_continuations_and_ansi_c_quotes():
    text = ("curl 'http://h/login' \\\n  -H $'X-Q: it\\'s' \\\n"
            "  --data-raw $'{\"a\":\"line\\nnext\"}' \\\n  --compressed\n"
            'curl "http://h/two" -d "v=\\"q\\" \\$HOME" # a comment\n')
    imp = curl.convert(text)
    s1, s2 = imp.plan["flows"][0]["steps"]
    assert s1["headers"]["X-Q"] == "it's" and s1["body"] == '{"a":"line\nnext"}'
    assert s2["body"] == 'v="q" $HOME'
    assert imp.unmapped == []


def test_shell_expansions_are_kept_and_listed():
    imp = curl.convert('curl http://h/ -H "Authorization: Bearer $TOKEN"')
    assert imp.plan["flows"][0]["steps"][0]["headers"]["Authorization"] == "Bearer $TOKEN"
    assert any("$TOKEN" in u for u in imp.unmapped)


def test_unclosed_quote_is_an_import_error():
    with pytest.raises(shell.ShellError):
        shell.commands("curl 'http://h/")


def test_a_host_header_for_another_host_is_listed_not_silently_dropped():
    step, unmapped = one("curl http://10.0.0.1:8080/ -H 'Host: shop.test' -H 'X-A: 1'")
    assert step["headers"] == {"X-A": "1"}
    assert unmapped == ["command 1: Host header 'shop.test' not sent (the engine sends the target's "
                        "host '10.0.0.1:8080'; point the target at the right address instead)"]
    assert one("curl http://h:1/ -H 'Host: h:1'")[1] == []


def test_windows_cmd_quoting_is_refused_with_the_fix():
    from services.plan.importers import common

    with pytest.raises(common.ImportError_, match=r"copy the request as cURL \(bash\)"):
        curl.convert('curl ^"http://h/a^" ^\n  -H ^"X: 1^"')


def test_http2_prior_knowledge_is_h2c_for_http_urls():
    imp = curl.convert("curl --http2-prior-knowledge http://h/a")
    assert imp.plan["http2"] == "h2c" and imp.unmapped == []
    loader.from_obj({**imp.plan, "rate": 1, "duration": 1})  # the plan loads as it is
    imp = curl.convert("curl --http2-prior-knowledge https://h/a")  # https: ALPN decides
    assert "http2" not in imp.plan and any("prior-knowledge" in u for u in imp.unmapped)
    imp = curl.convert("curl --http2 http://h/a")
    assert "http2" not in imp.plan and any("--http2" in u for u in imp.unmapped)
