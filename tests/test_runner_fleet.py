"""The runner's side of issue 11 on the real local store: the audit trail it writes, a cancel
seen mid-run, a stuck step flagged once, and the slot kept for small imports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import respx

from app.adapters.local_store import LocalStore
from app.alerts import Alerter
from app.breaker import ProviderBreaker
from app.cancellation import request_cancel
from app.config import Settings
from app.domain import Job, JobStatus, NewJob
from app.errors import LLMUnavailable, StoreUnavailable
from app.jobs import JobRunner
from app.metrics import REGISTRY
from app.processors.context import JobContext, NeedsLargeSlot
from app.queue_order import MB
from tests.conftest import USER_ID, make_settings
from tests.support.fakes import NoLLM

WEBHOOK = "https://hooks.example.test/fleet"
OTHER_USER = "7b1c0d2e-3f4a-4b5c-8d6e-9f0a1b2c3d4e"
Pipeline = Callable[[Job, JobContext], Awaitable[None]]


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[LocalStore]:
    store = LocalStore(settings.local_data_dir)
    for user in (USER_ID, OTHER_USER):
        await store.ensure_profile(user)
    yield store
    await store.aclose()


async def _queue(store: LocalStore, user: str = USER_ID, **hints: int) -> Job:
    job, _ = await store.enqueue_job(
        NewJob(user_id=user, storage_path=f"imports/{user}/x.json", **hints)  # type: ignore[arg-type]
    )
    return job


async def _until(store: LocalStore, job_id: str, check: Callable[[Job], bool]) -> Job:
    for _ in range(400):
        job = await store.get_job(job_id)
        if job is not None and check(job):
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {await store.get_job(job_id)}")


def _runner(
    store: LocalStore,
    settings: Settings,
    pipeline: Pipeline,
    breaker: ProviderBreaker | None = None,
) -> JobRunner:
    return JobRunner(
        store=store,
        llm=NoLLM(),  # type: ignore[arg-type]
        settings=settings,
        pipelines={"v2": pipeline},
        alerter=Alerter(webhook_url=WEBHOOK, client=httpx.AsyncClient()),
        breaker=breaker,
    )


async def _kinds(store: LocalStore, job_id: str) -> list[tuple[str, str | None]]:
    return [(e.kind, e.step) for e in await store.list_job_events(job_id)]


async def test_a_retried_then_completed_job_tells_its_story_in_events(
    store: LocalStore, settings: Settings
) -> None:
    tries = {"n": 0}

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("download_conversations"):
            ctx.count("download_conversations", bytes=3 * MB)
        async with ctx.step("extract_facts"):
            tries["n"] += 1
            if tries["n"] == 1:
                raise StoreUnavailable("the store did not answer", table="conversation_chunks")

    job = await _queue(store)
    runner = _runner(store, settings, pipeline)
    runner.start()
    await _until(store, job.id, lambda j: j.status is JobStatus.COMPLETE)
    await runner.stop()
    assert await _kinds(store, job.id) == [
        ("claimed", None),
        ("step_started", "download_conversations"),
        ("step_completed", "download_conversations"),
        ("step_started", "extract_facts"),
        ("step_failed", "extract_facts"),
        ("retry_scheduled", "extract_facts"),
        ("claimed", None),
        ("step_started", "download_conversations"),
        ("step_completed", "download_conversations"),
        ("step_started", "extract_facts"),
        ("step_completed", "extract_facts"),
        ("completed", None),
    ]
    events = await store.list_job_events(job.id)
    assert [e.attempt for e in events] == [1] * 6 + [2] * 6
    assert events[5].detail["error"].startswith("extract_facts: StoreUnavailable: ")
    assert events[2].detail["units"] == 3.0  # megabytes: what stuck detection learns from
    assert {e.worker_id for e in events} == {runner.worker_id}


async def test_a_cancel_stops_a_running_job_at_its_next_boundary(
    store: LocalStore, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, heartbeat_seconds=0.05)
    entered = asyncio.Event()

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("extract_facts"):
            entered.set()
            while True:
                await asyncio.sleep(0.01)
                ctx.pulse()

    job = await _queue(store)
    runner = _runner(store, settings, pipeline)
    runner.start()
    await asyncio.wait_for(entered.wait(), 5)
    _, outcome = await request_cancel(store, job.id, actor="operator:test")
    done = await _until(store, job.id, lambda j: j.status is JobStatus.CANCELED)
    await runner.stop()
    assert outcome.value == "cancel_requested"
    assert done.lease_owner is None
    assert done.error_message is not None
    assert done.error_message.startswith("extract_facts: Canceled: ")
    profile = await store.get_profile_status(USER_ID)
    assert profile is not None
    assert profile["full_pass_status"] == "failed"
    assert profile["full_pass_error"] == done.error_message
    kinds = [k for k, _ in await _kinds(store, job.id)]
    assert kinds[-2:] == ["cancel_requested", "canceled"]


@respx.mock
async def test_a_step_past_its_learned_threshold_is_flagged_once(
    store: LocalStore, tmp_path: Path
) -> None:
    alerts = respx.post(WEBHOOK).respond(200)
    settings = make_settings(
        tmp_path,
        heartbeat_seconds=0.05,
        stuck_floor_seconds=0.2,
        stuck_threshold_factor=1.0,
        stuck_min_samples=1,
    )
    release = asyncio.Event()
    # History: an earlier job's consolidate_facts took 10 ms.
    earlier = await _queue(store, OTHER_USER)
    await store.append_job_event(
        job_id=earlier.id,
        user_id=OTHER_USER,
        kind="step_completed",
        attempt=1,
        worker_id="earlier",
        step="consolidate_facts",
        detail={"duration_ms": 10, "units": 1},
    )
    await store.cancel_job(earlier.id, message="queued: Canceled: test")

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("consolidate_facts"):
            # Moving (so never stalled), just slower than any threshold allows.
            while not release.is_set():
                await asyncio.sleep(0.02)
                ctx.pulse()

    job = await _queue(store)
    before = REGISTRY.get_sample_value("soulprint_jobs_stuck_total", {"step": "consolidate_facts"})
    runner = _runner(store, settings, pipeline)
    runner.start()
    flagged = await _until(store, job.id, lambda j: (j.note or "").startswith("stuck in"))
    await asyncio.sleep(0.3)  # more heartbeats: still one flag
    release.set()
    done = await _until(store, job.id, lambda j: j.status is JobStatus.COMPLETE)
    await runner.stop()
    assert flagged.note is not None
    assert "stuck in consolidate_facts: running 0 min" in flagged.note
    assert [k for k, _ in await _kinds(store, job.id)].count("stuck") == 1
    assert done.stats["counts"]["stuck"]["step"] == "consolidate_facts"
    after = REGISTRY.get_sample_value("soulprint_jobs_stuck_total", {"step": "consolidate_facts"})
    assert (after or 0) - (before or 0) == 1
    stuck_alerts = [c for c in alerts.calls if b"looks stuck" in c.request.content]
    assert len(stuck_alerts) == 1


async def test_a_small_import_runs_beside_a_big_one_in_its_own_slot(
    store: LocalStore, settings: Settings
) -> None:
    big_running = asyncio.Event()
    finish_big = asyncio.Event()

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("download_conversations"):
            pass
        if job.user_id == USER_ID:
            big_running.set()
            await finish_big.wait()

    big = await _queue(store, message_count=1_000_000)  # ~1.4 GB by its hints
    runner = _runner(store, settings, pipeline)
    runner.start()
    await asyncio.wait_for(big_running.wait(), 5)
    small = await _queue(store, OTHER_USER, message_count=100)
    done = await _until(store, small.id, lambda j: j.status is JobStatus.COMPLETE)
    assert (await store.get_job(big.id)).status is JobStatus.RUNNING  # type: ignore[union-attr]
    finish_big.set()
    await _until(store, big.id, lambda j: j.status is JobStatus.COMPLETE)
    await runner.stop()
    assert done.attempts == 1
    claimed = await store.list_job_events(small.id)
    assert claimed[0].detail["small_slot"] is True


async def test_a_big_export_found_in_a_small_slot_goes_back_for_a_large_one(
    store: LocalStore, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, max_concurrent_jobs=1, small_job_slots=1)
    hold_general = asyncio.Event()
    seen_in_small: list[str] = []

    async def pipeline(job: Job, ctx: JobContext) -> None:
        if ctx.small_slot:
            seen_in_small.append(job.id)
            # As the pipeline does after a large download: the size recorded, the slot given
            # back (a freed slot claims again at once: without the size it would be taken again).
            await ctx.store.update_job(job.id, {"export_bytes": 300 * MB})
            raise NeedsLargeSlot(300 * MB)
        await hold_general.wait()

    blocker = await _queue(store, message_count=1_000_000)
    runner = _runner(store, settings, pipeline)
    runner.start()
    await _until(store, blocker.id, lambda j: j.status is JobStatus.RUNNING)
    surprise = await _queue(store, OTHER_USER)  # no hints: counts as small until measured
    released = await _until(store, surprise.id, lambda j: j.note is not None)
    hold_general.set()
    done = await _until(store, surprise.id, lambda j: j.status is JobStatus.COMPLETE)
    await runner.stop()
    assert seen_in_small == [surprise.id]
    assert released.note is not None
    assert "waiting for a slot for large imports: the export is 300 MB" in released.note
    assert done.attempts == 1  # the move to a large slot is not a failed attempt


async def test_a_job_that_ends_for_good_stops_its_batches_at_the_provider(
    store: LocalStore, settings: Settings
) -> None:
    from app.batch_port import LLMBatch
    from app.events import JobEvents
    from app.job_endings import JobEndings

    canceled: list[str] = []

    class _Batches:
        async def cancel(self, batch_id: str) -> None:
            canceled.append(batch_id)

    class _BatchLLM(NoLLM):
        def batches(self) -> _Batches:  # type: ignore[override]
            return _Batches()

    job = await _queue(store)
    for n, state in enumerate(("in_progress", "read")):
        batch = LLMBatch(
            id=f"00000000-0000-4000-8000-00000000000{n}",
            job_id=job.id,
            kind="extract",
            state="submitting",
            request_count=3,
        )
        await store.record_llm_batch(batch, {"r1": ["h1"]})
        await store.update_llm_batch(
            batch.id, state="in_progress", provider_batch_id=f"msgbatch_{n}"
        )
        if state == "read":
            await store.update_llm_batch(batch.id, state="read")
    endings = JobEndings(
        store=store,
        settings=settings,
        alerter=Alerter(webhook_url=None, client=httpx.AsyncClient()),
        events=JobEvents(store, "w"),
        llm=_BatchLLM(),  # type: ignore[arg-type]
    )
    await endings.cancel_provider_batches(job)
    assert canceled == ["msgbatch_0"]  # the one still running; the read one is left alone
    states = {b.provider_batch_id: b.state for b in await store.list_llm_batches(job.id)}
    assert states == {"msgbatch_0": "abandoned", "msgbatch_1": "read"}


@respx.mock
async def test_an_outage_is_announced_once_it_lasts_and_a_short_opening_only_noted(
    store: LocalStore, tmp_path: Path
) -> None:
    """Steady rate limiting opens the breaker for seconds at a time: noted on the job, never
    alerted. An opening that lasts PROVIDER_ALERT_AFTER_SECONDS is an outage: one alert, and a
    "waiting" then a "resumed" event on the job."""
    alerts = respx.post(WEBHOOK).respond(200)
    settings = make_settings(tmp_path, provider_alert_after_seconds=0.4)
    back = asyncio.Event()

    async def probe() -> None:
        if not back.is_set():
            raise LLMUnavailable("429", reason="rate limited", retry_after=0)

    breaker = ProviderBreaker(
        provider="anthropic", probe=probe, probe_initial_s=0.02, probe_max_s=0.02
    )
    notes: list[str | None] = []

    async def open_for(job: Job, seconds: float) -> None:
        back.clear()
        breaker.record_failure(LLMUnavailable("429", reason="rate limited", retry_after=0))
        await asyncio.sleep(seconds)
        notes.append((await store.get_job(job.id)).note)  # type: ignore[union-attr]
        back.set()
        await asyncio.wait_for(breaker.wait_closed(), timeout=5)
        await asyncio.sleep(0.05)  # the listeners run as tasks of their own

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("extract_facts"):
            await open_for(job, 0.1)  # shorter than the alert delay
            assert [k for k, _ in await _kinds(store, job.id)].count("waiting") == 0
            assert not alerts.called
            await open_for(job, 0.8)  # an outage

    job = await _queue(store)
    runner = _runner(store, settings, pipeline, breaker)
    runner.start()
    done = await _until(store, job.id, lambda j: j.status is JobStatus.COMPLETE)
    await runner.stop()
    await breaker.aclose()

    assert done.note is None
    assert all((n or "").startswith("waiting for Anthropic: rate limited since ") for n in notes)
    assert len(notes) == 2
    kinds = [k for k, _ in await _kinds(store, job.id)]
    assert kinds.count("waiting") == 1
    assert kinds.count("resumed") == 1
    assert kinds.index("waiting") < kinds.index("resumed") < kinds.index("completed")
    assert alerts.call_count == 1
    assert b":hourglass: waiting for Anthropic: rate limited" in alerts.calls[0].request.content


async def test_a_freed_slot_takes_the_next_job_at_once_not_at_the_next_poll(
    store: LocalStore, tmp_path: Path
) -> None:
    # One slot and a poll far longer than the test: only the wake on a job's end can claim
    # the second job in time (with 20 small imports in line, each poll gap adds to every wait).
    settings = make_settings(tmp_path, max_concurrent_jobs=1, small_job_slots=0, poll_seconds=60)

    async def pipeline(job: Job, ctx: JobContext) -> None:
        async with ctx.step("download_conversations"):
            pass

    first = await _queue(store)
    second = await _queue(store, OTHER_USER)
    runner = _runner(store, settings, pipeline)
    runner.start()
    done = await _until(store, second.id, lambda j: j.status is JobStatus.COMPLETE)
    await asyncio.wait_for(runner.stop(), 5)  # and stop() does not wait for the poll either
    first_done = await store.get_job(first.id)
    assert first_done is not None
    assert first_done.completed_at is not None
    assert done.started_at is not None
    assert done.started_at >= first_done.completed_at
