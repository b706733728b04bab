"""Issue 11 on both stores: the fair claim order under priority and aging (controlled
timestamps), and the bulk-retry search selecting exactly the right failed jobs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from app.domain import Job, JobStatus, NewJob
from app.fleet import FailedJobQuery
from tests.adapters.conftest import StoreHarness

pytestmark = pytest.mark.postgres

MB = 1024 * 1024
NOW = datetime.now(UTC).replace(microsecond=0)


def _user() -> str:
    return str(uuid.uuid4())


async def _queued(
    harness: StoreHarness,
    *,
    waiting: timedelta,
    export_bytes: int | None = None,
    messages: int | None = None,
) -> Job:
    """A job due since `waiting` ago (created then), of a measured or hinted size."""
    user = _user()
    job, _ = await harness.store.enqueue_job(
        NewJob(user_id=user, storage_path=f"imports/{user}/e.json", message_count=messages)
    )
    since = datetime.now(UTC) - waiting
    await harness.set_job(job.id, run_after=since, created_at=since)
    if export_bytes is not None:
        await harness.store.update_job(job.id, {"export_bytes": export_bytes})
    return job


async def _claim_all(harness: StoreHarness, *, small_only: bool = False) -> list[str]:
    order = []
    while job := await harness.store.claim_job(
        worker_id="w", lease_seconds=60, small_only=small_only
    ):
        order.append(job.id)
    return order


# --- the fair queue --------------------------------------------------------------------------


async def test_small_imports_go_before_a_big_one_that_waits(harness: StoreHarness) -> None:
    big = await _queued(harness, waiting=timedelta(minutes=10), export_bytes=1024 * MB)
    hinted_big = await _queued(harness, waiting=timedelta(minutes=20), messages=700_000)
    small = await _queued(harness, waiting=timedelta(minutes=1), export_bytes=2 * MB)
    unknown = await _queued(harness, waiting=timedelta(seconds=30))
    later = await _queued(harness, waiting=timedelta(minutes=-5))  # not due yet: never taken
    order = await _claim_all(harness)
    # places: small -60+7s, unknown -30s, hinted_big -1200+3600s (capped), big -600+3600s
    assert order == [small.id, unknown.id, hinted_big.id, big.id]
    assert later.id not in order


async def test_aging_lifts_a_long_waiting_big_job_above_new_small_ones(
    harness: StoreHarness,
) -> None:
    big = await _queued(harness, waiting=timedelta(minutes=62), export_bytes=2048 * MB)
    medium = await _queued(harness, waiting=timedelta(minutes=7), export_bytes=100 * MB)
    small_new = await _queued(harness, waiting=timedelta(seconds=5), export_bytes=1 * MB)
    small_old = await _queued(harness, waiting=timedelta(minutes=3), export_bytes=1 * MB)
    # places: big -3720+3600 = -120s, medium -420+360 = -60s, small_old -176s, small_new ~0s
    assert await _claim_all(harness) == [small_old.id, big.id, medium.id, small_new.id]


async def test_a_small_job_slot_takes_only_small_or_unknown_jobs(harness: StoreHarness) -> None:
    big = await _queued(harness, waiting=timedelta(hours=3), export_bytes=1024 * MB)
    hinted = await _queued(harness, waiting=timedelta(hours=2), messages=21_000)  # ~30 MB
    small = await _queued(harness, waiting=timedelta(minutes=1), export_bytes=5 * MB)
    unknown = await _queued(harness, waiting=timedelta(seconds=1))
    assert await _claim_all(harness, small_only=True) == [small.id, unknown.id]
    assert await _claim_all(harness) == [big.id, hinted.id]


# --- the bulk-retry search -------------------------------------------------------------------


@dataclass
class _Failures:
    jobs: dict[str, Job]
    users: dict[str, str]


async def _failed(harness: StoreHarness, user: str, error: str, ago: timedelta) -> Job:
    store = harness.store
    job, _ = await store.enqueue_job(NewJob(user_id=user, storage_path=f"imports/{user}/e.json"))
    claimed = await store.claim_job(worker_id="w", lease_seconds=60)
    assert claimed is not None
    assert claimed.id == job.id
    assert await store.finish_job(
        job_id=job.id, worker_id="w", status=JobStatus.FAILED, error_message=error
    )
    at = NOW - ago
    await harness.set_job(job.id, completed_at=at, created_at=at - timedelta(minutes=5))
    return job


async def _failures(harness: StoreHarness) -> _Failures:
    users = {name: _user() for name in "ABCDEFG"}
    m = timedelta(minutes=1)
    specs = {
        "j6": ("A", "extract_facts: LLMUnavailable: overloaded (old import)", 240 * m),
        "j1": ("A", "extract_facts: LLMUnavailable: Rate limit exceeded (429)", 30 * m),
        "j2": ("B", "download_conversations: ExportNotFound: no export at 'imports/x'", 90 * m),
        "j3": ("C", "save_chunks: StoreUnavailable: 50% of writes failed; retry_later", 180 * m),
        "j4": ("D", "generate_memory: LLMBadOutput: reply said extract_facts: twice", 120 * m),
        "j5": ("E", "extract_facts: LLMUnavailable: overloaded", 60 * m),
        "j7": ("F", "complete: StoreError: profile write refused", 45 * m),
    }
    jobs = {
        name: await _failed(harness, users[user], error, ago)
        for name, (user, error, ago) in specs.items()
    }
    store = harness.store
    done, _ = await store.enqueue_job(NewJob(user_id=users["G"], storage_path="imports/g/e.json"))
    assert await store.claim_job(worker_id="w", lease_seconds=60) is not None
    assert await store.finish_job(job_id=done.id, worker_id="w", status=JobStatus.COMPLETE)
    withdrawn, _ = await store.enqueue_job(NewJob(user_id=_user(), storage_path="imports/h/e"))
    await store.cancel_job(withdrawn.id, message="canceled")
    jobs["f_active"], _ = await store.enqueue_job(
        NewJob(user_id=users["F"], storage_path="imports/f/e.json")
    )
    return _Failures(jobs=jobs, users=users)


async def test_failed_job_filters_select_exactly_the_right_jobs(harness: StoreHarness) -> None:
    f = await _failures(harness)
    m = timedelta(minutes=1)

    async def found(**filters: object) -> list[str]:
        names = {job.id: name for name, job in f.jobs.items()}
        jobs = await harness.store.find_failed_jobs(FailedJobQuery(**filters))  # type: ignore[arg-type]
        return [names.get(job.job_id, job.job_id) for job in jobs]

    assert await found() == ["j6", "j3", "j4", "j2", "j5", "j7", "j1"]  # oldest failure first
    assert await found(since=NOW - 90 * m) == ["j2", "j5", "j7", "j1"]  # since is inclusive
    assert await found(until=NOW - 90 * m) == ["j6", "j3", "j4"]  # until is exclusive
    assert await found(since=NOW - 120 * m, until=NOW - 45 * m) == ["j4", "j2", "j5"]
    assert await found(error_contains="llmunavailable") == ["j6", "j5", "j1"]
    assert await found(error_contains="ratE LIMIT") == ["j1"]
    assert await found(error_contains="50%") == ["j3"]
    assert await found(error_contains="%") == ["j3"]  # no LIKE wildcards
    assert await found(error_contains="_later") == ["j3"]
    assert await found(error_contains="no such text") == []
    assert await found(step="extract_facts") == ["j6", "j5", "j1"]  # not j4, which quotes it
    assert await found(step="extract") == []
    assert await found(user_id=f.users["A"]) == ["j6", "j1"]
    assert await found(step="extract_facts", since=NOW - 40 * m) == ["j1"]
    assert await found(user_id=str(uuid.uuid4())) == []


async def test_failed_jobs_say_what_stands_in_the_way_of_a_retry(harness: StoreHarness) -> None:
    f = await _failures(harness)
    by_id = {job.job_id: job for job in await harness.store.find_failed_jobs(FailedJobQuery())}
    old, latest = by_id[f.jobs["j6"].id], by_id[f.jobs["j1"].id]
    assert (old.later_job_id, old.later_job_status) == (f.jobs["j1"].id, "failed")
    assert old.blocked_by is not None
    assert "superseded" in old.blocked_by
    assert (latest.later_job_id, latest.blocked_by) == (None, None)
    assert latest.step == "extract_facts"
    assert latest.failed_at == NOW - timedelta(minutes=30)
    blocked = by_id[f.jobs["j7"].id]
    assert (blocked.later_job_id, blocked.later_job_status) == (f.jobs["f_active"].id, "queued")
    assert blocked.blocked_by is not None
    assert "active job" in blocked.blocked_by
