"""Command lines as bash reads them: words, quotes, continuations — never executed.

``commands(text)`` splits text into commands (at newlines, ``;``, ``&&``, ``||``, ``|``
outside quotes) and each command into words, the way bash would before running it:
``'single'``, ``"double"`` (backslash escapes ``\\ " $ `` and newline), ``$'ANSI-C'``
(``\\n``, ``\\xHH``, ``\\u…``, as Chrome's "Copy as cURL (bash)" writes), backslash outside
quotes, backslash-newline continuations and ``#`` comments. ``shlex`` does all of this
except ``$'…'``, which dev tools emit for any body with a quote or a newline; so here it
is done in one pass. Expansions (``$VAR``, ``$(…)``, globs) are never performed: they are
kept as written and reported, since an importer must not run what it reads.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\\(x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|[0-7]{1,3}|c.|.)", re.S)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b",
           "f": "\f", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


class ShellError(ValueError):
    """Text bash itself would not accept (an unclosed quote)."""


def _ansi(body: str) -> str:
    def sub(m: re.Match) -> str:
        e = m.group(1)
        if e[0] in "xuU":
            return chr(int(e[1:], 16))
        if e[0] in "01234567":
            return chr(int(e, 8) & 0xFF)
        if e[0] == "c":
            return chr(ord(e[1]) & 0x1F)
        return _SIMPLE.get(e, "\\" + e)

    return _ANSI.sub(sub, body)


def commands(text: str) -> tuple[list[list[str]], list[str]]:
    """(commands as lists of words, expansions left as written)."""
    out: list[list[str]] = []
    kept: list[str] = []
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i, n = 0, len(text)

    def end_word() -> None:
        nonlocal word, in_word
        if in_word:
            words.append("".join(word))
        word, in_word = [], False

    def end_command() -> None:
        nonlocal words
        end_word()
        if words:
            out.append(words)
        words = []

    while i < n:
        c = text[i]
        if c == "\\":
            if text.startswith("\r\n", i + 1):
                i += 3
            elif text.startswith("\n", i + 1):
                i += 2
            else:
                if i + 1 < n:
                    word.append(text[i + 1])
                in_word, i = True, i + 2
        elif c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                raise ShellError("a single quote is not closed")
            word.append(text[i + 1:j])
            in_word, i = True, j + 1
        elif c == "$" and text.startswith("'", i + 1):
            j = i + 2
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise ShellError("a $'...' quote is not closed")
            word.append(_ansi(text[i + 2:j]))
            in_word, i = True, j + 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n and text[j + 1] in '\\"$`\n':
                    if text[j + 1] != "\n":
                        word.append(text[j + 1])
                    j += 2
                    continue
                if text[j] in "$`" and j + 1 < n and re.match(r"[A-Za-z_{(]", text[j + 1]):
                    kept.append(text[j:j + 20])
                word.append(text[j])
                j += 1
            if j >= n:
                raise ShellError("a double quote is not closed")
            in_word, i = True, j + 1
        elif c in " \t":
            end_word()
            i += 1
        elif c in "\r\n;&|":
            end_command()
            i += 1
        elif c == "#" and not in_word:
            while i < n and text[i] != "\n":
                i += 1
        else:
            if c in "$`" and i + 1 < n and re.match(r"[A-Za-z_{(]", text[i + 1]):
                kept.append(text[i:i + 20])
            word.append(c)
            in_word, i = True, i + 1
    end_command()
    return out, kept
