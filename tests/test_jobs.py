"""The runner's job lifecycle on the real local store, with scripted pipelines (DESIGN §3)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import structlog

from app.adapters.local_store import LocalStore
from app.alerts import Alerter
from app.config import Settings
from app.domain import Job, JobStatus, NewJob
from app.errors import BadExport, LLMUnavailable
from app.jobs import JobRunner, failure_message
from app.processors.context import JobContext
from tests.conftest import USER_ID, make_settings
from tests.support.fakes import NoLLM

WEBHOOK = "https://hooks.example.test/alert"
Pipeline = Callable[[Job, JobContext], Awaitable[None]]


async def _wait_for(
    store: LocalStore, job_id: str, status: JobStatus, when: Callable[[Job], bool] = bool
) -> Job:
    for _ in range(400):
        job = await store.get_job(job_id)
        if job is not None and job.status is status and job.lease_owner is None and when(job):
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job never reached {status}: {await store.get_job(job_id)}")


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[LocalStore]:
    store = LocalStore(settings.local_data_dir)
    await store.ensure_profile(USER_ID)
    yield store
    await store.aclose()


async def _queue(store: LocalStore, max_attempts: int = 3) -> Job:
    job, _ = await store.enqueue_job(
        NewJob(user_id=USER_ID, storage_path=f"imports/{USER_ID}/x.json", max_attempts=max_attempts)
    )
    return job


async def _run(
    store: LocalStore, settings: Settings, pipeline: Pipeline, *, version: str = "v2"
) -> tuple[JobRunner, httpx.AsyncClient]:
    client = httpx.AsyncClient()
    runner = JobRunner(
        store=store,
        llm=NoLLM(),  # type: ignore[arg-type]
        settings=settings,
        pipelines={version: pipeline},
        alerter=Alerter(webhook_url=WEBHOOK, client=client),
    )
    runner.start()
    return runner, client


async def _stop(runner: JobRunner, client: httpx.AsyncClient) -> None:
    await runner.stop()
    await client.aclose()


async def test_success_completes_job(store: LocalStore, settings: Settings) -> None:
    seen: list[dict[str, Any] | None] = []

    async def pipeline(job: Job, ctx: JobContext) -> None:
        seen.append(await store.get_profile_status(job.user_id))
        async with ctx.step("download_conversations"):
            pass

    job = await _queue(store)
    with structlog.testing.capture_logs() as logs:
        runner, client = await _run(store, settings, pipeline)
        done = await _wait_for(store, job.id, JobStatus.COMPLETE)
        await _stop(runner, client)
    (summary,) = [entry for entry in logs if entry["event"] == "job.finished"]
    assert summary["outcome"] == "complete"
    assert summary["status"] == "complete"
    assert summary["attempt"] == 1
    assert "download_conversations" in summary["durations_ms"]
    assert {"cost_usd", "input_tokens", "chunks", "duration_ms"} <= set(summary)
    assert done.attempts == 1
    assert done.progress == 100
    assert done.completed_at is not None
    assert done.current_step == "download_conversations"
    assert seen[0] is not None
    assert seen[0]["full_pass_status"] == "processing"
    assert seen[0]["full_pass_started_at"] is not None
    assert seen[0]["full_pass_error"] is None


@respx.mock
async def test_permanent_failure_fails_once_with_readable_error_and_alert(
    store: LocalStore, settings: Settings
) -> None:
    webhook = respx.post(WEBHOOK).mock(return_value=httpx.Response(200))

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("chunk_conversations"):
            raise BadExport("the file is not JSON (it starts with '<html>'); export again")

    job = await _queue(store)
    runner, client = await _run(store, settings, pipeline)
    done = await _wait_for(store, job.id, JobStatus.FAILED)
    await _stop(runner, client)
    expected = (
        "chunk_conversations: BadExport: the file is not JSON (it starts with '<html>'); "
        "export again"
    )
    assert done.error_message == expected
    assert done.attempts == 1
    profile = await store.get_profile_status(USER_ID)
    assert profile is not None
    assert profile["full_pass_status"] == "failed"
    assert profile["full_pass_error"] == expected
    assert webhook.call_count == 1
    text = json.loads(webhook.calls[0].request.content)["text"]
    assert USER_ID in text
    assert job.id in text
    assert "chunk_conversations" in text


@respx.mock
async def test_transient_failure_retries_then_fails_for_good(
    store: LocalStore, settings: Settings
) -> None:
    webhook = respx.post(WEBHOOK).mock(return_value=httpx.Response(500))
    calls = 0

    async def pipeline(job: Job, ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        async with ctx.step("extract_facts"):
            raise LLMUnavailable("Anthropic kept answering 529 overloaded")

    job = await _queue(store, max_attempts=2)
    runner, client = await _run(store, settings, pipeline)
    done = await _wait_for(store, job.id, JobStatus.FAILED)
    await _stop(runner, client)
    assert calls == 2
    assert done.attempts == 2
    assert (
        done.error_message
        == "extract_facts: LLMUnavailable: Anthropic kept answering 529 overloaded"
    )
    assert webhook.call_count == 1  # the alert failed to send; the job still ended cleanly


async def test_transient_failure_is_requeued_with_backoff(
    store: LocalStore, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, retry_backoff_seconds=3600)

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("save_chunks"):
            raise LLMUnavailable("down")

    job = await _queue(store)
    runner, client = await _run(store, settings, pipeline)
    queued = await _wait_for(store, job.id, JobStatus.QUEUED, lambda j: j.error_message is not None)
    await _stop(runner, client)
    assert queued.attempts == 1
    assert queued.run_after is not None
    assert (queued.run_after - datetime.now(UTC)).total_seconds() > 3000
    assert queued.error_message == "save_chunks: LLMUnavailable: down"
    profile = await store.get_profile_status(USER_ID)
    assert profile is not None
    assert profile["full_pass_status"] == "processing"


async def test_a_new_attempt_clears_the_note_the_last_one_left(
    store: LocalStore, settings: Settings
) -> None:
    seen: list[str | None] = []

    async def pipeline(job: Job, ctx: JobContext) -> None:
        row = await store.get_job(job.id)
        assert row is not None
        seen.append(row.note)

    job = await _queue(store)
    # A crashed process left its note: the next attempt must not show it while it runs, nor
    # leave it on the finished job.
    await store.update_job(job.id, {"note": "waiting for Anthropic: overloaded since 10:02 UTC"})
    runner, client = await _run(store, settings, pipeline)
    done = await _wait_for(store, job.id, JobStatus.COMPLETE)
    await _stop(runner, client)
    assert seen == [None]
    assert done.note is None


async def test_an_unexpected_error_while_claiming_does_not_stop_the_runner(
    store: LocalStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = store.claim_job
    calls = 0

    async def claim_once_badly(**kwargs: Any) -> Job | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("a row that does not read")
        return await claim(**kwargs)

    monkeypatch.setattr(store, "claim_job", claim_once_badly)

    async def pipeline(job: Job, ctx: JobContext) -> None:
        return None

    job = await _queue(store)
    with structlog.testing.capture_logs() as logs:
        runner, client = await _run(store, settings, pipeline)
        await _wait_for(store, job.id, JobStatus.COMPLETE)
        await _stop(runner, client)
    failed = [e for e in logs if e["event"] == "runner.claim_failed"]
    assert [e["error_type"] for e in failed] == ["ValueError"]


async def test_shutdown_releases_the_job_without_counting_the_attempt(
    store: LocalStore, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, shutdown_grace_seconds=0.1)
    started = asyncio.Event()

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("extract_facts"):
            started.set()
            await asyncio.sleep(3600)

    job = await _queue(store)
    runner, client = await _run(store, settings, pipeline)
    await asyncio.wait_for(started.wait(), 5)
    await _stop(runner, client)
    released = await _wait_for(store, job.id, JobStatus.QUEUED, lambda j: j.started_at is not None)
    assert released.attempts == 0
    assert released.error_message is None
    profile = await store.get_profile_status(USER_ID)
    assert profile is not None
    assert profile["full_pass_status"] == "processing"


async def test_lost_lease_stops_work_without_touching_the_job(
    store: LocalStore, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, heartbeat_seconds=0.05, lease_seconds=1)
    cancelled = asyncio.Event()

    async def pipeline(job: Job, ctx: JobContext) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = await _queue(store)
    runner, client = await _run(store, settings, pipeline)
    await asyncio.sleep(0.1)
    # As if this worker had stalled past its lease and another had claimed the job.
    await store._write(
        lambda conn: conn.execute(
            "UPDATE processing_jobs SET lease_owner = 'other-worker' WHERE id = ?", (job.id,)
        ).close()
    )
    await asyncio.wait_for(cancelled.wait(), 5)
    await _stop(runner, client)
    current = await store.get_job(job.id)
    assert current is not None
    assert current.status is JobStatus.RUNNING
    assert current.lease_owner == "other-worker"


async def test_a_stalled_job_fails_the_attempt_naming_the_step(
    store: LocalStore, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, job_stall_seconds=0.3, heartbeat_seconds=0.05)

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("hierarchical_reduce"):
            await asyncio.sleep(3600)  # no pulse: nothing moves

    job = await _queue(store, max_attempts=2)
    runner, client = await _run(store, settings, pipeline)
    done = await _wait_for(store, job.id, JobStatus.FAILED)
    await _stop(runner, client)
    assert done.attempts == 2  # a stall fails the attempt, and the job is retried
    assert done.current_step == "hierarchical_reduce"
    assert done.error_message == (
        "hierarchical_reduce: JobStalled: stalled in hierarchical_reduce: no progress for "
        "0.005 min (JOB_STALL_SECONDS); this attempt was stopped and the job will be retried"
    )


async def test_a_long_job_that_keeps_moving_is_never_stalled(
    store: LocalStore, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, job_stall_seconds=0.3, heartbeat_seconds=0.05)

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("extract_facts"):
            for _ in range(30):  # 1.5 s in all, five times the stall limit
                await asyncio.sleep(0.05)
                ctx.pulse()

    job = await _queue(store, max_attempts=1)
    runner, client = await _run(store, settings, pipeline)
    done = await _wait_for(store, job.id, JobStatus.COMPLETE)
    await _stop(runner, client)
    assert done.attempts == 1


async def test_job_for_unknown_pipeline_fails_clearly(
    store: LocalStore, settings: Settings
) -> None:
    async def pipeline(job: Job, ctx: JobContext) -> None:
        raise AssertionError("must not run")

    job = await _queue(store)
    runner, client = await _run(store, settings, pipeline, version="v9")
    done = await _wait_for(store, job.id, JobStatus.FAILED)
    await _stop(runner, client)
    assert done.error_message is not None
    assert "pipeline 'v2'" in done.error_message


def test_failure_message_is_capped_at_500() -> None:
    message = failure_message("extract_facts", BadExport("x" * 2000))
    assert len(message) == 500
    assert message.startswith("extract_facts: BadExport: xxx")


async def test_job_that_killed_its_worker_every_time_is_failed_not_rerun(
    store: LocalStore, settings: Settings
) -> None:
    async def pipeline(job: Job, ctx: JobContext) -> None:
        raise AssertionError("must not run a job whose attempts are spent")

    job = await _queue(store, max_attempts=1)
    # A worker claimed it and died (its lease expires at once): the one attempt is spent.
    dead = await store.claim_job(worker_id="dead-worker", lease_seconds=0)
    assert dead is not None
    assert dead.attempts == 1
    runner, client = await _run(store, settings, pipeline)
    done = await _wait_for(store, job.id, JobStatus.FAILED)
    await _stop(runner, client)
    assert done.error_message is not None
    assert "AttemptsExhausted: the job was interrupted on each of its 1 attempts" in (
        done.error_message
    )


async def test_an_unexpected_error_reads_as_what_to_do_its_type_in_the_logs(
    store: LocalStore, settings: Settings
) -> None:
    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("consolidate_facts"):
            raise KeyError("groups")  # a bug, not an AppError

    job = await _queue(store, max_attempts=1)
    with structlog.testing.capture_logs() as logs:
        runner, client = await _run(store, settings, pipeline)
        done = await _wait_for(store, job.id, JobStatus.FAILED)
        await _stop(runner, client)
    assert done.error_message == (
        "consolidate_facts: InternalError: the service hit an unexpected error in this step "
        "(logged with this job's id); retry the job, and report it if it fails the same way again"
    )
    assert done.current_step == "consolidate_facts"
    profile = await store.get_profile_status(USER_ID)
    assert profile is not None
    assert profile["full_pass_error"] == done.error_message
    (logged,) = [e for e in logs if e["event"] == "job.unexpected_error"]
    assert (logged["error_type"], logged["step"]) == ("KeyError", "consolidate_facts")
