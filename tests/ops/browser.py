"""The real browser for the ops page's tests: Debian's chromium (/usr/bin/chromium) driven by
Playwright's Python package — never a browser Playwright downloads. Missing, it fails the tests
loudly (`make browser` installs it), it does not skip them.

And `GatedLLM`: the offline provider held at two gates a test opens from its own thread, so a
real job, run by the real runner, moves exactly when the test wants it to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from app.adapters.offline_llm import OfflineLLM
from app.ports import (
    ExtractionRequest,
    ExtractionResult,
    LLMReply,
    SectionsRequest,
)

__all__ = ["CHROMIUM", "GatedLLM", "chromium", "console_errors"]

CHROMIUM = Path("/usr/bin/chromium")
# As the machine's probe runs it: no sandbox as root; nothing that phones home, which this
# machine's closed network refuses (and logs) many times a second.
_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"the ops page's browser tests need Debian's chromium at {CHROMIUM}: "
            "run `make browser` (apt-get install -y chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=_FLAGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def console_errors(page: Page) -> list[str]:
    """Errors the page logs from now on (a refused CSP, a failed load, a script error)."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{page.url}: {message.text}")

    def on_error(error: Error) -> None:
        errors.append(f"{page.url}: {error.message}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    return errors


class GatedLLM(OfflineLLM):
    """Extraction waits for the gate `extract`, the v2 sections for `sections`; open them with
    `open(name)` on the server's loop (`Served.call`)."""

    def __init__(self) -> None:
        self._gates: dict[str, asyncio.Event] = {}

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    async def open(self, name: str) -> None:
        self._gate(name).set()

    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[ExtractionResult]:
        await self._gate("extract").wait()
        return await super().extract_facts(request)

    async def write_sections(self, request: SectionsRequest) -> LLMReply[dict[str, object]]:
        await self._gate("sections").wait()
        return await super().write_sections(request)
