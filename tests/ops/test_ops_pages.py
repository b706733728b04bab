"""What the pages say: the queue's figures, running jobs (progress, chunks, ETA, cost, stuck,
waiting), failed jobs in words with Retry, the bulk retry, and a job's own page."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx

from app.adapters.local_store import LocalStore
from app.config import Settings
from app.domain import Job, JobStatus
from app.fleet import JobEvent
from app.main import create_app
from app.ops.views import describe_error, eta_seconds, is_stuck
from tests.conftest import API_KEY
from tests.ops.conftest import csrf_of, ops_client, sign_in
from tests.ops.seeds import FAILED_ERROR, failed_job, running_job

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)


def _job(**fields: object) -> Job:
    base = Job(
        id="j",
        user_id="u",
        status=JobStatus.RUNNING,
        storage_path="imports/u/e",
        pipeline_version="v2",
        attempts=2,
        max_attempts=3,
        created_at=NOW - timedelta(hours=1),
        current_step="extract_facts",
        progress=40,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def _event(kind: str, *, attempt: int = 2, at: datetime = NOW, step: str | None = None) -> JobEvent:
    return JobEvent(1, "j", "u", kind, attempt, "w", step, at)


def test_an_error_is_told_as_its_step_its_type_and_its_words() -> None:
    assert describe_error(FAILED_ERROR)[:2] == ("extract_facts", "LLMUnavailable")
    assert describe_error(FAILED_ERROR)[2].startswith("12 of 40 chunks could not be extracted")
    assert describe_error("queued: Canceled: the import was canceled")[0] == "queued"
    assert describe_error("something else: with colons: here") == (
        None,
        None,
        "something else: with colons: here",
    )
    assert describe_error(None) == (None, None, "")


def test_eta_follows_this_attempts_pace_and_is_silent_when_it_cannot_tell() -> None:
    events = [
        _event("claimed", attempt=1, at=NOW - timedelta(hours=5)),  # an earlier attempt
        _event("claimed", at=NOW - timedelta(minutes=10)),
    ]
    assert eta_seconds(_job(progress=40), events, now=NOW) == 15 * 60  # 40 % in 10 min
    assert eta_seconds(_job(progress=3), events, now=NOW) is None  # too early to tell
    assert eta_seconds(_job(progress=100), events, now=NOW) is None
    waiting = _job(note="waiting for Anthropic: rate limited since 11:58 UTC")
    assert eta_seconds(waiting, events, now=NOW) is None
    assert eta_seconds(_job(), events[:1], now=NOW) is None  # no claim of this attempt
    # A first attempt's claim is also the row's started_at — unless a retry reset the attempts.
    first = _job(attempts=1, started_at=NOW - timedelta(minutes=20))
    assert eta_seconds(first, [], now=NOW) == 30 * 60
    assert eta_seconds(first, [_event("requeued", attempt=0)], now=NOW) is None


def test_stuck_is_the_runners_word_for_this_step_of_this_attempt() -> None:
    job = _job()
    assert is_stuck(job, [_event("stuck", step="extract_facts")])
    assert not is_stuck(job, [_event("stuck", step="save_chunks")])  # a step it left
    assert not is_stuck(job, [_event("stuck", attempt=1, step="extract_facts")])
    assert not is_stuck(job, [_event("step_started", step="extract_facts")])


async def _page(settings: Settings, store: LocalStore, path: str) -> httpx.Response:
    async with ops_client(create_app(settings, store=store, pipelines={})) as http:
        await sign_in(http, API_KEY)
        return await http.get(path)


def _row(page: httpx.Response, job_id: str) -> str:
    found = re.search(rf'<tr data-job-id="{job_id}">(.*?)</tr>', page.text, re.DOTALL)
    assert found, f"no row for {job_id}"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found[1]))


async def test_the_overview_shows_the_queue_and_the_running_jobs(
    settings: Settings, local_store: LocalStore
) -> None:
    moving = await running_job(
        local_store,
        current_step="v2_regeneration",
        progress=92,
        chunk_count=40,
        cost_usd=0.0123,
        # Extraction's own count includes the signal batches: the row's chunk_count is the total.
        stats={"counts": {"extract_facts": {"chunks": 41, "extracted": 38, "failed": 1}}},
    )
    await local_store.append_job_event(
        job_id=moving.id,
        user_id=moving.user_id,
        kind="stuck",
        attempt=1,
        worker_id="w",
        step="v2_regeneration",
    )
    waiting = await running_job(
        local_store,
        current_step="extract_facts",
        progress=35,
        chunk_count=12,
        note="waiting for Anthropic: overloaded since 11:58 UTC",
    )
    await failed_job(local_store)
    page = await _page(settings, local_store, "/ops")
    assert page.status_code == 200
    assert re.search(r'id="count-running">2<', page.text)
    assert re.search(r'id="count-failed">1<', page.text)
    assert "Provider breaker closed" in page.text

    row = _row(page, moving.id)
    assert "v2_regeneration" in row
    assert "92%" in row
    assert "40 of 40 (1 failed)" in row
    assert "$0.0123" in row
    assert "≈" in row
    assert "stuck" in row
    other = _row(page, waiting.id)
    assert "— of 12" in other  # extraction not over: how far it is, the row does not say
    assert "waiting for Anthropic: overloaded" in other
    assert "≈" not in other
    assert "stuck" not in other


async def test_failed_jobs_in_words_with_retry_a_page_at_a_time(
    settings: Settings, local_store: LocalStore
) -> None:
    jobs = [await failed_job(local_store) for _ in range(22)]
    page = await _page(settings, local_store, "/ops")
    newest = jobs[-1]
    row = _row(page, newest.id)
    assert "12 of 40 chunks could not be extracted because the provider did not answer" in row
    assert "extract_facts" in row
    assert "LLMUnavailable" in row
    assert "1 of 3" in row
    assert f'action="/ops/jobs/{newest.id}/retry"' in page.text
    assert jobs[0].id not in page.text  # the oldest two are on the next page
    assert 'href="/ops?failed_offset=20#failed"' in page.text
    older = await _page(settings, local_store, "/ops?failed_offset=20")
    assert jobs[0].id in older.text
    assert jobs[1].id in older.text
    assert newest.id not in older.text


async def _statuses(store: LocalStore, jobs: list[Job]) -> list[JobStatus | None]:
    found = [await store.get_job(j.id) for j in jobs]
    return [j.status if j else None for j in found]


async def test_bulk_retry_lists_then_queues_the_failed_since(
    settings: Settings, local_store: LocalStore
) -> None:
    failed = [await failed_job(local_store) for _ in range(2)]
    async with ops_client(create_app(settings, store=local_store, pipelines={})) as http:
        await sign_in(http, API_KEY)
        token = csrf_of(await http.get("/ops"))
        listed = await http.post(
            "/ops/retry-failed", data={"csrf": token, "since": "1h", "dry_run": "true"}
        )
        assert "2 matched, 2 would be queued, 0 skipped" in listed.text
        assert await _statuses(local_store, failed) == [JobStatus.FAILED] * 2
        none = await http.post(
            "/ops/retry-failed",
            data={"csrf": token, "since": "1h", "error_contains": "Supabase"},
        )
        assert "0 matched" in none.text
        done = await http.post("/ops/retry-failed", data={"csrf": token, "since": "1h"})
        assert "2 matched, 2 queued, 0 skipped" in done.text
        bad = await http.post("/ops/retry-failed", data={"csrf": token, "since": "lately"})
    assert await _statuses(local_store, failed) == [JobStatus.QUEUED] * 2
    assert bad.status_code == 422
    assert "neither a duration (30m, 2h, 1d) nor an ISO 8601 time" in bad.text


async def test_a_jobs_page_tells_its_story(settings: Settings, local_store: LocalStore) -> None:
    job = await failed_job(local_store)
    page = await _page(settings, local_store, f"/ops/jobs/{job.id}")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))
    kinds = re.findall(r'<tr class="event (\w+)">', page.text)
    assert kinds == [
        "claimed",
        "step_started",
        "step_completed",
        "step_started",
        "step_failed",
        "failed",
    ]
    assert "bytes=2048, duration_ms=140" in text
    assert "download_conversations: 140 ms" in text
    assert "chunk_conversations: 2 s" in text
    assert 'width="360.0"' in page.text  # the longest step spans the chart
    assert 'id="retry"' in page.text
    assert "12 of 40 chunks could not be extracted" in text


async def test_an_unknown_or_malformed_job_is_a_page_that_says_so(
    settings: Settings, local_store: LocalStore
) -> None:
    missing = await _page(settings, local_store, "/ops/jobs/5b0f3c52-8f3a-4c47-9a55-2f6a1f0e9d11")
    malformed = await _page(settings, local_store, "/ops/jobs/not-a-job")
    assert missing.status_code == malformed.status_code == 404
    assert "no job 5b0f3c52-8f3a-4c47-9a55-2f6a1f0e9d11" in missing.text
    assert "a job id is a UUID" in malformed.text
    assert missing.headers["content-type"].startswith("text/html")
