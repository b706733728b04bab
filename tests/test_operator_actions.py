"""The operations behind the operator's API and CLI, and the runner's hooks, on the real local
store: the event recorder, cancel, forget, bulk retry."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.adapters.local_store import LocalStore
from app.bulk_retry import bulk_retry
from app.cancellation import finish_canceled, request_cancel
from app.domain import JobStatus, NewJob
from app.errors import JobConflict, StoreUnavailable
from app.events import JobEvents
from app.fleet import CancelOutcome, EventKind, FailedJobQuery
from app.forgetting import forget_user_data, job_temp_prefix
from app.metrics import REGISTRY
from tests.support.seeding import seed_job


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class _BrokenTrail(LocalStore):
    async def append_job_event(self, **_: Any) -> None:
        raise StoreUnavailable("the store is down")


# --- the recorder ----------------------------------------------------------------------------


async def test_the_recorder_never_raises_and_counts_what_it_could_not_write(
    tmp_path: Path,
) -> None:
    store = _BrokenTrail(tmp_path)
    job = await seed_job(store, run=True)
    before = _sample("soulprint_job_events_total", kind="claimed", outcome="failed")
    assert await JobEvents(store, "w").record(job, EventKind.CLAIMED) is False
    after = _sample("soulprint_job_events_total", kind="claimed", outcome="failed")
    assert after == before + 1
    await store.aclose()


async def test_details_are_bounded_and_step_completed_carries_units(
    local_store: LocalStore,
) -> None:
    job = await seed_job(local_store, run=True)
    await local_store.update_job(job.id, {"export_bytes": 10 * 1024 * 1024})
    events = JobEvents(local_store, "w")
    stuck_before = _sample("soulprint_jobs_stuck_total", step="extract_facts")
    assert await events.record(
        job,
        EventKind.STUCK,
        step="extract_facts",
        error="x" * 1000,
        nested={"a": [1, 2]},
        o=object(),
    )
    assert _sample("soulprint_jobs_stuck_total", step="extract_facts") == stuck_before + 1
    fresh = await local_store.get_job(job.id)
    assert fresh is not None
    counts: Mapping[str, Any] = {"bytes": 10, "step": "ignored", "duration_ms": 1}
    await events.step_completed(fresh, "download_conversations", duration_ms=1500, counts=counts)
    stuck, done = await local_store.list_job_events(job.id)
    assert len(stuck.detail["error"]) == 300
    assert stuck.detail["nested"] == {"a": [1, 2]}
    assert stuck.detail["o"] == "object"
    assert (done.step, done.detail) == (
        "download_conversations",
        {"bytes": 10, "duration_ms": 1500, "units": 10.0},
    )


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel_of_a_queued_job_says_so_on_the_profile(local_store: LocalStore) -> None:
    job = await seed_job(local_store)
    before = _sample("soulprint_cancels_total", outcome="canceled")
    canceled, outcome = await request_cancel(local_store, job.id, actor="operator:test")
    assert (canceled.status, outcome) == (JobStatus.CANCELED, CancelOutcome.CANCELED)
    profile = await local_store.get_profile_status(job.user_id)
    assert profile is not None
    assert profile["full_pass_status"] == "failed"
    assert profile["full_pass_error"].startswith("queued: Canceled: the import was canceled")
    assert canceled.error_message == profile["full_pass_error"]
    trail = await local_store.list_job_events(job.id)
    assert [(e.kind, e.worker_id) for e in trail] == [
        ("cancel_requested", "operator:test"),
        ("canceled", "operator:test"),
    ]
    assert _sample("soulprint_cancels_total", outcome="canceled") == before + 1


async def test_a_running_job_is_stopped_by_its_runner_through_finish_canceled(
    local_store: LocalStore,
) -> None:
    job = await seed_job(local_store, run=True)
    await local_store.update_profile(job.user_id, {"full_pass_status": "processing"})
    requested, outcome = await request_cancel(local_store, job.id, actor="op")
    assert (requested.status, outcome) == (JobStatus.RUNNING, CancelOutcome.CANCEL_REQUESTED)
    profile = await local_store.get_profile_status(job.user_id)
    assert profile is not None
    assert profile["full_pass_status"] == "processing"  # until the runner stops it
    assert not await finish_canceled(
        local_store, JobEvents(local_store, "not-the-holder"), job, step="x"
    )
    assert await finish_canceled(
        local_store, JobEvents(local_store, "w"), job, step="extract_facts"
    )
    done = await local_store.get_job(job.id)
    assert done is not None
    assert done.status is JobStatus.CANCELED
    profile = await local_store.get_profile_status(job.user_id)
    assert profile is not None
    assert profile["full_pass_status"] == "failed"
    assert profile["full_pass_error"].startswith("extract_facts: Canceled: ")
    kinds = [(e.kind, e.worker_id) for e in await local_store.list_job_events(job.id)]
    assert kinds == [("cancel_requested", "op"), ("canceled", "w")]


# --- forget ----------------------------------------------------------------------------------


async def test_forget_refuses_an_active_job_unless_asked_to_cancel_it(
    local_store: LocalStore, tmp_path: Path
) -> None:
    old = await seed_job(local_store, fail="x: Y: z")
    active, _ = await local_store.enqueue_job(NewJob(user_id=old.user_id, storage_path="imports/a"))
    (tmp_path / f"{job_temp_prefix(old.id)}abc").mkdir()
    (tmp_path / f"{job_temp_prefix(old.id)}abc" / "export").write_bytes(b"x")
    keep = tmp_path / f"{job_temp_prefix(str(uuid.uuid4()))}def"
    keep.mkdir()
    with pytest.raises(JobConflict, match=f"has a queued job \\({active.id}\\)"):
        await forget_user_data(local_store, old.user_id, actor="op", temp_root=tmp_path)
    report = await forget_user_data(
        local_store, old.user_id, actor="op", cancel=True, temp_root=tmp_path
    )
    assert report.canceled_job is not None
    assert report.canceled_job.id == active.id
    assert (report.counts.jobs, report.counts.events, report.temp_dirs) == (2, 2, 1)
    assert keep.is_dir()
    assert not (tmp_path / f"{job_temp_prefix(old.id)}abc").exists()
    profile = await local_store.get_profile_status(old.user_id)
    assert profile is not None  # the product's row stays


async def test_forget_with_cancel_waits_for_a_running_job_then_refuses(
    local_store: LocalStore,
) -> None:
    job = await seed_job(local_store, run=True)
    with pytest.raises(JobConflict, match="a cancel was requested"):
        await forget_user_data(local_store, job.user_id, actor="op", cancel=True, wait_seconds=0)
    still = await local_store.get_job(job.id)
    assert still is not None
    assert (still.status, still.cancel_requested_at is not None) == (JobStatus.RUNNING, True)


# --- bulk retry ------------------------------------------------------------------------------


async def test_bulk_retry_dry_run_changes_nothing_and_the_real_run_requeues(
    local_store: LocalStore,
) -> None:
    a = await seed_job(local_store, fail="extract_facts: LLMUnavailable: overloaded")
    b = await seed_job(local_store, fail="extract_facts: LLMUnavailable: rate limited")
    c = await seed_job(local_store, fail="download_conversations: ExportNotFound: gone")
    blocked = await seed_job(local_store, fail="extract_facts: LLMUnavailable: again")
    await local_store.enqueue_job(NewJob(user_id=blocked.user_id, storage_path="imports/b"))
    query = FailedJobQuery(step="extract_facts", since=datetime.now(UTC) - timedelta(hours=1))

    plan = await bulk_retry(local_store, query, actor="op", dry_run=True)
    assert (plan.matched, plan.queued, plan.skipped) == (3, 2, 1)
    assert {i.job.job_id: i.outcome for i in plan.items} == {
        a.id: "would_queue",
        b.id: "would_queue",
        blocked.id: "skipped",
    }
    for job in (a, b, c):
        unchanged = await local_store.get_job(job.id)
        assert unchanged is not None
        assert unchanged.status is JobStatus.FAILED

    queued_before = _sample("soulprint_bulk_retries_total", outcome="queued")
    done = await bulk_retry(local_store, query, actor="op", limit=1)
    assert [(i.outcome, i.reason) for i in done.items][:2] == [
        ("queued", None),
        ("skipped", "over the limit of 1"),
    ]
    first = await local_store.get_job(done.items[0].job.job_id)
    assert first is not None
    assert first.status is JobStatus.QUEUED
    assert [e.kind for e in await local_store.list_job_events(first.id)] == ["requeued"]
    profile = await local_store.get_profile_status(first.user_id)
    assert profile is not None
    assert (profile["full_pass_status"], profile["full_pass_error"]) == ("processing", None)
    assert _sample("soulprint_bulk_retries_total", outcome="queued") == queued_before + 1
    untouched = await local_store.get_job(c.id)
    assert untouched is not None
    assert untouched.status is JobStatus.FAILED


async def test_forget_with_chunks_drops_the_record_of_their_import(local_store: LocalStore) -> None:
    def seed(conn: Any) -> None:  # the table issue 9 adds to the local schema, where it exists
        conn.execute(
            "CREATE TABLE IF NOT EXISTS conversation_chunk_imports (user_id TEXT PRIMARY KEY,"
            " import_job_id TEXT NOT NULL, committed_at TEXT NOT NULL)"
        )
        for user in ("u-1", "u-2"):
            conn.execute(
                "INSERT INTO conversation_chunk_imports VALUES (?, 'j', '2026-01-01')", (user,)
            )

    async def users() -> list[str]:
        sql = "SELECT user_id FROM conversation_chunk_imports ORDER BY user_id"
        rows = await local_store._run(lambda conn: conn.execute(sql).fetchall())
        return [r[0] for r in rows]

    await local_store._write(seed)
    await local_store.forget_user("u-1")  # without chunks: the record of them stays
    assert await users() == ["u-1", "u-2"]
    await local_store.forget_user("u-1", include_chunks=True)
    assert await users() == ["u-2"]
