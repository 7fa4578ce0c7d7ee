"""Headless Debian Chromium driven by Playwright (never `playwright install`: no browser downloads here)."""

from __future__ import annotations

import shutil

import pytest


# Module scope, not session: Playwright's sync API keeps an event loop running on the main thread while it is
# open, and later tests that call asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian `chromium` is not installed (make system-deps installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    yield page
    context.close()


