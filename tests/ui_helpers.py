"""Helpers for the UI's browser tests: a headless Debian Chromium driven by Playwright.

Playwright's own browser download is never used: ``/usr/bin/chromium`` (Debian's
package) is launched directly. Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@asynccontextmanager
async def browser_page(viewport: tuple[int, int] = (1440, 900)):
    """A fresh browser context and page; console errors are collected on ``page.errors``."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            context = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = await context.new_page()
            page.errors = []  # type: ignore[attr-defined]
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))  # type: ignore[attr-defined]
            yield page
            await context.close()
        finally:
            await browser.close()


async def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
