"""HTML pages: one shell (header, nav, a main element) per page, plus the login form.

Pages carry no data: the page's script (``static/js/<page>.js``) fetches the JSON API
and listens on the WebSocket, and renders with ``textContent`` (no HTML injection).
"""

from __future__ import annotations

from html import escape

from aiohttp import web

NAV = (("runs", "/", "Runs"), ("new", "/new", "New run"), ("tests", "/tests", "Tests"),
       ("builder", "/builder", "Builder"),
       ("archive", "/archive", "Archive"), ("generators", "/generators", "Generators"),
       ("hosts", "/hosts", "Hosts"))
TITLES = {"runs": "Runs", "new": "New run", "live": "Live run", "report": "Report",
          "compare": "Compare runs", "generators": "Generators", "hosts": "Hosts", "tests": "Tests", "builder": "Request builder",
          "archive": "Archive"}
ASSET_VERSION = "2"


def shell(page: str, with_charts: bool = False) -> str:
    nav = "".join(
        f'<a href="{href}" data-nav="{key}"{" class=active" if key == page or (page in ("live", "report", "compare") and key == "runs") else ""}>{label}</a>'
        for key, href, label in NAV
    )
    charts = (
        f'<link rel="stylesheet" href="/static/vendor/uplot/uPlot.min.css?v={ASSET_VERSION}">'
        f'<script src="/static/vendor/uplot/uPlot.iife.min.js?v={ASSET_VERSION}" defer></script>'
        if with_charts else ""
    )
    title = escape(TITLES.get(page, page))
    logs = (f'\n<script src="/static/js/logs.js?v={ASSET_VERSION}" defer></script>'
            if page in ("live", "report") else "")
    return f"""<!doctype html>
<html lang="en" data-theme="dark"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Surge</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/css/surge.css?v={ASSET_VERSION}">{charts}
<script src="/static/js/common.js?v={ASSET_VERSION}" defer></script>{logs}
<script src="/static/js/{page}.js?v={ASSET_VERSION}" defer></script>
</head><body data-page="{page}">
<header class="top"><a class="brand" href="/"><span class="logo">S</span>Surge</a>
<nav>{nav}</nav><div class="spacer"></div>
<a class="alerts-badge" id="alerts-badge" href="/hosts" hidden></a>
<button class="theme" id="theme" title="Light or dark">◐</button>
<span class="conn" id="conn" title="live connection">connecting</span></header>
<div class="alert-banner" id="alert-banner" role="alert" hidden></div>
<main id="app"><div class="loading">Loading…</div></main>
</body></html>"""


LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · Surge</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#0f1115;color:#d8dde6;display:grid;place-items:center;min-height:100vh}
form{background:#171a21;border:1px solid #2a2f3a;border-radius:8px;padding:28px 32px;width:320px}
h1{font-size:20px;margin:0 0 4px;display:flex;align-items:center;gap:9px}
.logo{display:inline-grid;place-items:center;width:24px;height:24px;border-radius:5px;background:linear-gradient(135deg,#4c8dff,#b084f5);color:#fff;font-size:14px}p{color:#8b93a3;margin:0 0 18px}
label{display:block;font-size:12px;color:#8b93a3;margin-bottom:4px}
input{box-sizing:border-box;width:100%;padding:8px 10px;background:#0f1115;border:1px solid #2a2f3a;border-radius:5px;color:inherit;font:inherit}
button{margin-top:14px;width:100%;padding:8px;background:#3d7eff;border:0;border-radius:5px;color:#fff;font:inherit;font-weight:600;cursor:pointer}
.err{color:#ff6b6b;margin-top:10px;font-size:13px}
</style></head><body>
<form method="post" action="/login"><h1><span class="logo">S</span>Surge</h1><p>This UI needs its access token.</p>
<label for="token">Token</label><input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Sign in</button>{error}</form></body></html>"""


def page(name: str, with_charts: bool = False) -> web.Response:
    return web.Response(text=shell(name, with_charts), content_type="text/html")


def login(error: str = "", status: int = 200) -> web.Response:
    err = f'<div class="err" id="login-error">{escape(error)}</div>' if error else ""
    return web.Response(text=LOGIN.replace("{error}", err), content_type="text/html", status=status)
