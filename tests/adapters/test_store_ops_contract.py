"""The ops page's queries on both stores (SQLite, and PostgreSQL through the migration's function
over the PostgREST stand-in): pages of jobs of one status, newest first; jobs ended per hour."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.domain import Job, JobStatus, NewJob
from app.ops_port import HourTotals
from tests.adapters.conftest import StoreHarness

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)


async def _job(harness: StoreHarness, status: JobStatus, **columns: Any) -> Job:
    user = str(uuid.uuid4())
    job, _ = await harness.store.enqueue_job(
        NewJob(user_id=user, storage_path=f"imports/{user}/export.json")
    )
    await harness.set_job(job.id, status=status.value, **columns)
    return job


async def test_list_jobs_pages_one_status_newest_first(harness: StoreHarness) -> None:
    failed = [
        await _job(harness, JobStatus.FAILED, completed_at=T0 + timedelta(minutes=m))
        for m in (5, 1, 9, 3, 7)
    ]
    await _job(harness, JobStatus.COMPLETE, completed_at=T0 + timedelta(hours=1))
    await _job(harness, JobStatus.QUEUED)
    newest_first = [failed[i].id for i in (2, 4, 0, 3, 1)]

    first = await harness.store.list_jobs(JobStatus.FAILED, limit=2)
    second = await harness.store.list_jobs(JobStatus.FAILED, limit=2, offset=2)
    rest = await harness.store.list_jobs(JobStatus.FAILED, limit=2, offset=4)
    assert [j.id for j in first + second + rest] == newest_first
    assert all(j.status is JobStatus.FAILED for j in first + second + rest)
    assert await harness.store.list_jobs(JobStatus.FAILED, offset=5) == []
    assert len(await harness.store.list_jobs(JobStatus.FAILED, limit=0)) == 1  # clamped


async def test_list_jobs_orders_running_by_claim_and_queued_by_creation(
    harness: StoreHarness,
) -> None:
    early = await _job(harness, JobStatus.RUNNING, started_at=T0)
    late = await _job(harness, JobStatus.RUNNING, started_at=T0 + timedelta(minutes=1))
    old = await _job(harness, JobStatus.QUEUED, created_at=T0)
    new = await _job(harness, JobStatus.QUEUED, created_at=T0 + timedelta(seconds=1))
    running = await harness.store.list_jobs(JobStatus.RUNNING)
    queued = await harness.store.list_jobs(JobStatus.QUEUED)
    assert [j.id for j in running] == [late.id, early.id]
    assert [j.id for j in queued] == [new.id, old.id]


async def test_ties_are_broken_by_id_so_pages_never_overlap(harness: StoreHarness) -> None:
    same = [await _job(harness, JobStatus.COMPLETE, completed_at=T0) for _ in range(4)]
    pages = [await harness.store.list_jobs(JobStatus.COMPLETE, limit=1, offset=i) for i in range(4)]
    assert [p[0].id for p in pages] == sorted((j.id for j in same), reverse=True)


async def test_jobs_that_ended_are_counted_per_hour_with_their_cost(harness: StoreHarness) -> None:
    at = T0 + timedelta(minutes=10)
    await _job(harness, JobStatus.COMPLETE, completed_at=at, cost_usd=0.25)
    await _job(harness, JobStatus.COMPLETE, completed_at=at + timedelta(minutes=49), cost_usd=0.5)
    await _job(harness, JobStatus.FAILED, completed_at=at + timedelta(minutes=5), cost_usd=0.125)
    await _job(harness, JobStatus.CANCELED, completed_at=at + timedelta(hours=2), cost_usd=0)
    await _job(harness, JobStatus.FAILED, completed_at=at + timedelta(hours=2, minutes=1))
    # Not counted: ended before `since`; still running (no end); queued again after a retry.
    await _job(harness, JobStatus.COMPLETE, completed_at=T0 - timedelta(seconds=1), cost_usd=9)
    await _job(harness, JobStatus.RUNNING, started_at=at, cost_usd=7)
    await _job(harness, JobStatus.QUEUED, cost_usd=3)

    hours = await harness.store.finished_jobs_by_hour(T0)

    assert hours == [
        HourTotals(hour=T0, complete=2, failed=1, canceled=0, cost_usd=0.875),
        HourTotals(hour=T0 + timedelta(hours=2), complete=0, failed=1, canceled=1, cost_usd=0),
    ]
    assert all(h.hour.tzinfo is not None and h.hour.utcoffset() == timedelta(0) for h in hours)
    assert await harness.store.finished_jobs_by_hour(T0 + timedelta(hours=3)) == []
