"""Issue 11 on both stores (SQLite, and PostgreSQL through the migration's functions over the
PostgREST stand-in): the job event trail, cancel, forgetting a user, step-duration samples."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.domain import Chunk, Fact, FactCategory, Job, JobStatus, NewJob
from app.errors import JobConflict, JobNotFound
from app.fleet import CancelOutcome
from tests.adapters.conftest import StoreHarness

pytestmark = pytest.mark.postgres


def _user() -> str:
    return str(uuid.uuid4())


def _new(user_id: str) -> NewJob:
    return NewJob(user_id=user_id, storage_path=f"imports/{user_id}/export.json")


async def _running(harness: StoreHarness, user_id: str, worker: str = "w") -> Job:
    job, _ = await harness.store.enqueue_job(_new(user_id))
    claimed = await harness.store.claim_job(worker_id=worker, lease_seconds=60)
    assert claimed is not None
    assert claimed.id == job.id
    return claimed


async def _event(harness: StoreHarness, job: Job, kind: str, **detail: object) -> None:
    step = str(detail.pop("step")) if "step" in detail else None
    await harness.store.append_job_event(
        job_id=job.id,
        user_id=job.user_id,
        kind=kind,
        attempt=job.attempts,
        worker_id="w",
        step=step,
        detail=detail,
    )


# --- the trail -------------------------------------------------------------------------------


async def test_events_are_appended_in_order_and_survive_a_retry(harness: StoreHarness) -> None:
    store = harness.store
    job = await _running(harness, _user())
    await _event(harness, job, "claimed")
    await _event(harness, job, "step_started", step="download_conversations")
    await _event(harness, job, "step_failed", step="download_conversations", error="x: Y: z")
    await _event(harness, job, "failed", error="download_conversations: Y: z")
    assert await store.finish_job(
        job_id=job.id, worker_id="w", status=JobStatus.FAILED, error_message="x: Y: z"
    )
    requeued = await store.requeue_job(job.id)
    await _event(harness, requeued, "requeued", by="operator")
    again = await store.claim_job(worker_id="w2", lease_seconds=60)
    assert again is not None
    await _event(harness, again, "claimed")
    await _event(harness, await _running(harness, _user()), "claimed")  # another job's trail

    events = await store.list_job_events(job.id)
    assert [(e.kind, e.attempt, e.step) for e in events] == [
        ("claimed", 1, None),
        ("step_started", 1, "download_conversations"),
        ("step_failed", 1, "download_conversations"),
        ("failed", 1, None),
        ("requeued", 0, None),
        ("claimed", 1, None),
    ]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert all(e.job_id == job.id and e.user_id == job.user_id for e in events)
    assert events[2].detail == {"error": "x: Y: z"}
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert abs((events[0].at - datetime.now(UTC)).total_seconds()) < 60
    assert await store.list_job_events(str(uuid.uuid4())) == []


async def test_a_long_trail_is_read_whole_past_the_row_cap(harness: StoreHarness) -> None:
    job = await _running(harness, _user())
    for n in range(1_003):
        await _event(harness, job, "step_started", step="extract_facts", n=n)
    events = await harness.store.list_job_events(job.id)
    assert [e.detail["n"] for e in events] == list(range(1_003))


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel_withdraws_a_queued_job_at_once(harness: StoreHarness) -> None:
    store, user = harness.store, _user()
    job, _ = await store.enqueue_job(_new(user))
    canceled, outcome = await store.cancel_job(job.id, message="canceled: by an operator")
    assert outcome is CancelOutcome.CANCELED
    assert (canceled.status, canceled.error_message) == (
        JobStatus.CANCELED,
        "canceled: by an operator",
    )
    assert canceled.completed_at is not None
    assert canceled.cancel_requested_at is not None
    assert await store.claim_job(worker_id="w", lease_seconds=60) is None
    _, outcome_again = await store.cancel_job(job.id, message="again")
    assert outcome_again is CancelOutcome.ALREADY_CANCELED
    fresh, created = await store.enqueue_job(_new(user))  # canceled is not active
    assert created
    assert fresh.id != job.id
    assert (await store.count_jobs_by_status())["canceled"] >= 1


async def test_cancel_of_a_running_job_is_a_request_its_runner_honours(
    harness: StoreHarness,
) -> None:
    store = harness.store
    job = await _running(harness, _user())
    requested, outcome = await store.cancel_job(job.id, message="unused")
    assert outcome is CancelOutcome.CANCEL_REQUESTED
    assert (requested.status, requested.lease_owner) == (JobStatus.RUNNING, "w")
    assert requested.cancel_requested_at is not None
    assert requested.error_message is None
    again, outcome = await store.cancel_job(job.id, message="unused")
    assert outcome is CancelOutcome.CANCEL_REQUESTED
    assert again.cancel_requested_at == requested.cancel_requested_at
    assert await store.renew_lease(job_id=job.id, worker_id="w", lease_seconds=60)
    # The runner sees the flag (get_job) and stops at its next boundary:
    seen = await store.get_job(job.id)
    assert seen is not None
    assert seen.cancel_requested_at is not None
    assert not await store.finish_job(job_id=job.id, worker_id="other", status=JobStatus.CANCELED)
    assert await store.finish_job(
        job_id=job.id, worker_id="w", status=JobStatus.CANCELED, error_message="canceled: words"
    )
    done = await store.get_job(job.id)
    assert done is not None
    assert (done.status, done.error_message, done.lease_owner) == (
        JobStatus.CANCELED,
        "canceled: words",
        None,
    )
    assert done.completed_at is not None


async def test_cancel_of_a_running_job_whose_worker_is_gone_is_immediate(
    harness: StoreHarness,
) -> None:
    job = await _running(harness, _user())
    await harness.set_job(job.id, lease_expires_at=datetime.now(UTC) - timedelta(seconds=5))
    canceled, outcome = await harness.store.cancel_job(job.id, message="canceled: gone")
    assert outcome is CancelOutcome.CANCELED
    assert (canceled.status, canceled.lease_owner) == (JobStatus.CANCELED, None)
    assert await harness.store.claim_job(worker_id="w2", lease_seconds=60) is None


async def test_cancel_refuses_finished_and_unknown_jobs(harness: StoreHarness) -> None:
    store = harness.store
    job = await _running(harness, _user())
    await store.cancel_job(job.id, message="unused")  # requested, then the job fails anyway
    assert await store.finish_job(job_id=job.id, worker_id="w", status=JobStatus.FAILED)
    with pytest.raises(JobConflict, match="only a queued or running job"):
        await store.cancel_job(job.id, message="x")
    with pytest.raises(JobNotFound):
        await store.cancel_job(str(uuid.uuid4()), message="x")
    retried = await store.requeue_job(job.id)
    assert retried.cancel_requested_at is None  # a retry does not inherit the old request


# --- forget ----------------------------------------------------------------------------------


async def _history(harness: StoreHarness, user: str) -> Job:
    """Two finished jobs with events, three cached facts and two chunks for `user`."""
    store = harness.store
    for status in (JobStatus.FAILED, JobStatus.COMPLETE):
        job = await _running(harness, user)
        await _event(harness, job, "claimed")
        await _event(harness, job, status.value)
        assert await store.finish_job(job_id=job.id, worker_id="w", status=status)
    fact = Fact(category=FactCategory.ABOUT_ME, text="Lives in Porto.")
    await store.put_cached_facts(
        user_id=user, extractor_version="x", entries={f"h{n}": [fact] for n in range(3)}
    )
    now = datetime.now(UTC)
    chunks = [
        Chunk(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user}/{n}")),
            conversation_id=f"c{n}",
            title=None,
            created_at=now,
            index=n,
            content="hello",
            message_count=2,
            content_hash=f"h{n}",
            token_estimate=2,
        )
        for n in range(2)
    ]
    await store.upsert_chunks(user_id=user, job_id=job.id, chunks=chunks)
    return job


async def test_forget_removes_exactly_the_users_rows(harness: StoreHarness) -> None:
    store, user, other = harness.store, _user(), _user()
    last = await _history(harness, user)
    kept = await _history(harness, other)
    counts = await store.forget_user(user)
    assert (counts.jobs, counts.events, counts.fact_cache, counts.chunks) == (2, 4, 3, 0)
    assert last.id in counts.job_ids
    assert len(counts.job_ids) == 2
    assert await store.latest_job_for_user(user) is None
    for job_id in counts.job_ids:
        assert await store.list_job_events(job_id) == []
    hashes = ["h0", "h1", "h2"]
    assert (
        await store.get_cached_facts(user_id=user, extractor_version="x", content_hashes=hashes)
        == {}
    )
    assert await store.count_chunks(user) == 2  # the product's: only with the flag

    again = await store.forget_user(user, include_chunks=True)
    assert (again.jobs, again.events, again.fact_cache, again.chunks) == (0, 0, 0, 2)
    assert await store.count_chunks(user) == 0

    latest = await store.latest_job_for_user(other)
    assert latest is not None
    assert latest.id == kept.id
    assert [e.kind for e in await store.list_job_events(kept.id)] == ["claimed", "complete"]
    cached = await store.get_cached_facts(
        user_id=other, extractor_version="x", content_hashes=hashes
    )
    assert len(cached) == 3
    assert await store.count_chunks(other) == 2


async def test_forget_refuses_while_a_job_is_active(harness: StoreHarness) -> None:
    store, user = harness.store, _user()
    await _history(harness, user)
    active, _ = await store.enqueue_job(_new(user))
    with pytest.raises(JobConflict, match="queued"):
        await store.forget_user(user, include_chunks=True)
    latest = await store.latest_job_for_user(user)
    assert latest is not None
    assert latest.id == active.id
    assert await store.count_chunks(user) == 2
    cached = await store.get_cached_facts(
        user_id=user, extractor_version="x", content_hashes=["h0"]
    )
    assert len(cached) == 1


# --- stuck detection's history ---------------------------------------------------------------


async def test_step_samples_are_the_latest_numeric_ones_per_step(harness: StoreHarness) -> None:
    job = await _running(harness, _user())
    for n in range(5):
        await _event(harness, job, "step_completed", step="extract_facts", duration_ms=n, units=10)
    await _event(harness, job, "step_completed", step="generate_memory", duration_ms=7.5)
    await _event(harness, job, "step_completed", step="generate_memory", duration_ms="slow")
    await _event(harness, job, "step_started", step="generate_memory", duration_ms=99)
    samples = await harness.store.step_duration_samples(
        ["extract_facts", "generate_memory", "save_memory"], per_step=3
    )
    assert samples == {
        "extract_facts": [(4.0, 10.0), (3.0, 10.0), (2.0, 10.0)],
        "generate_memory": [(7.5, None)],
        "save_memory": [],
    }
