"""A multipart/form-data body as curl 7.88 and browsers put it on the wire (RFC 7578):
the expectation the importers' unit tests compare their bodies with."""

from __future__ import annotations


def multipart(boundary: str, *parts: tuple[str, ...]) -> str:
    """``parts``: ``(name, value)`` for a field, ``(name, content, filename, content_type)``
    for a file."""
    out = []
    for name, value, *file in parts:
        head = f'Content-Disposition: form-data; name="{name}"'
        if file:
            filename, content_type = file
            head += f'; filename="{filename}"\r\nContent-Type: {content_type}'
        out.append(f"--{boundary}\r\n{head}\r\n\r\n{value}\r\n")
    return "".join(out) + f"--{boundary}--\r\n"
