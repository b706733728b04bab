"""The ops page in a real browser (Debian's chromium), served by a real uvicorn with the real
local store and the real job runner: an operator signs in, watches a running job move on, opens
a failed job, retries it and sees it queued, and signs out — and no page logs an error.

The running job is a real full pass of the bundled sample export; its offline LLM waits at gates
the test opens (tests/ops/browser.py), so "it moved" is certain, not a race. A screenshot of each
page is written under the test's temporary folder (the path is printed)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from app.adapters.local_store import LocalStore
from app.domain import Job
from app.main import create_app
from tests.conftest import API_KEY, make_settings
from tests.ops.browser import GatedLLM, chromium, console_errors
from tests.ops.seeds import failed_job, queued_job
from tests.support.serving import Served, serving

pytestmark = pytest.mark.browser

# The page reloads itself every 5 s: a change shows within one reload.
_RELOAD_MS = 12_000


@dataclass
class OpsServer:
    served: Served
    llm: GatedLLM
    running: Job
    failed: Job

    @property
    def url(self) -> str:
        return self.served.base_url + "/ops"

    def open_gate(self, name: str) -> None:
        self.served.call(self.llm.open(name))


async def _seed(data_dir: Path) -> tuple[Job, Job]:
    store = LocalStore(data_dir)
    try:
        failed = await failed_job(store)  # first: the runner must not claim it
        return await queued_job(store), failed
    finally:
        await store.aclose()


@pytest.fixture
def ops_server(tmp_path: Path) -> Iterator[OpsServer]:
    settings = make_settings(
        tmp_path, run_worker=True, max_concurrent_jobs=1, shutdown_grace_seconds=1
    )
    # In a thread of its own: Playwright's sync API holds an event loop in this one.
    with ThreadPoolExecutor(1) as seeder:
        running, failed = seeder.submit(asyncio.run, _seed(settings.local_data_dir)).result()
    llm = GatedLLM()
    app = create_app(settings, llm=llm)
    with serving(app, name="ops-page", lifespan="on") as served:
        server = OpsServer(served, llm, running, failed)
        try:
            yield server
        finally:
            server.open_gate("extract")
            server.open_gate("sections")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _progress(page: Page, job: Job) -> int:
    cell = page.locator(f'#running tr[data-job-id="{job.id}"] .progress-value')
    return int(cell.inner_text().rstrip("%"))


def test_an_operator_signs_in_watches_retries_and_signs_out(
    ops_server: OpsServer, browser: Browser, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = console_errors(page)
    running, failed = ops_server.running, ops_server.failed

    # Signing in: a stranger is sent to the form; a wrong key is refused, in words.
    page.goto(ops_server.url)
    expect(page).to_have_url(re.compile(r"/ops/login$"))
    page.fill("#key", "not-the-key")
    page.click("#sign-in")
    expect(page.get_by_role("alert")).to_contain_text("not the service's key")
    page.screenshot(path=shots / "1-sign-in-refused.png", full_page=True)
    page.fill("#key", API_KEY)
    page.click("#sign-in")
    expect(page).to_have_url(ops_server.url)

    # The running job, held in extraction: its step, its progress.
    row = page.locator(f'#running tr[data-job-id="{running.id}"]')
    expect(row.locator(".step")).to_have_text("extract_facts", timeout=_RELOAD_MS)
    before = _progress(page, running)
    expect(page.locator("#count-running")).to_have_text("1")
    expect(page.locator("#count-failed")).to_have_text("1")
    page.screenshot(path=shots / "2-overview-extracting.png", full_page=True)

    # Let extraction finish: the job runs on to v2 (where it waits again), and the page, which
    # reloads itself, shows it further along, with its chunks counted.
    ops_server.open_gate("extract")
    expect(row.locator(".step")).to_have_text("v2_regeneration", timeout=_RELOAD_MS)
    after = _progress(page, running)
    assert after > before
    expect(row).to_contain_text(re.compile(r"\b(\d+) of \1\b"))
    page.screenshot(path=shots / "3-overview-progressed.png", full_page=True)

    # The failed job: its page tells what happened; Retry puts it back on the queue (it stays
    # queued: it is big, and the one general slot is the running job's).
    page.locator(f'#failed tr[data-job-id="{failed.id}"] a').first.click()
    expect(page).to_have_url(f"{ops_server.url}/jobs/{failed.id}")
    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.locator("#job-error")).to_contain_text("12 of 40 chunks could not be extracted")
    expect(page.locator("#timeline tr.event")).to_have_count(6)
    expect(page.locator("#steps svg rect.step-bar")).to_have_count(2)
    page.screenshot(path=shots / "4-failed-job.png", full_page=True)
    page.click("#retry")
    expect(page.locator("#job-status")).to_have_text("queued")
    expect(page.locator("#notice")).to_contain_text("Queued again")
    expect(page.locator("#timeline tr.event").last).to_contain_text("requeued")
    page.screenshot(path=shots / "5-failed-job-requeued.png", full_page=True)

    # The running job's own page: its trail so far and its time per step.
    page.goto(f"{ops_server.url}/jobs/{running.id}")
    expect(page.locator("#job-status")).to_have_text("running")
    assert page.locator("#steps svg rect.step-bar").count() >= 4
    page.screenshot(path=shots / "6-running-job.png", full_page=True)

    # Signing out: back to the form, and the page is closed again.
    page.click("#sign-out")
    expect(page).to_have_url(re.compile(r"/ops/login$"))
    page.goto(ops_server.url)
    expect(page).to_have_url(re.compile(r"/ops/login$"))
    page.screenshot(path=shots / "7-signed-out.png", full_page=True)

    page.close()
    # The one error the browser logs is the refused sign-in's answer: a 401, by design.
    refused = "the server responded with a status of 401 (Unauthorized)"
    assert errors == [f"{ops_server.url}/login: Failed to load resource: {refused}"]
