"""One behavioural suite for every `Store`: the ports' docstrings, tested against LocalStore and
SupabaseStore (the latter over fake_postgrest on the migrated PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from app.adapters.rows import parse_timestamp
from app.domain import Chunk, Fact, FactCategory, JobStatus, NewJob
from app.errors import ExportNotFound, JobNotFound, ProfileNotFound, StoreError
from app.ports import FactCacheEntry, FactCacheKey, Store
from tests.adapters.conftest import StoreHarness

pytestmark = pytest.mark.postgres

NOW = datetime.now(UTC)


def _user() -> str:
    return str(uuid.uuid4())


def _new(user_id: str, **kw: object) -> NewJob:
    return NewJob(user_id=user_id, storage_path=f"imports/{user_id}/export.json", **kw)  # type: ignore[arg-type]


def _chunk(user_id: str, n: int, *, content: str = "hello", days_old: int = 1) -> Chunk:
    return Chunk(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user_id}/{n}")),
        conversation_id=f"conv-{n}",
        title=f"Title {n}",
        created_at=NOW - timedelta(days=days_old),
        index=n,
        content=content,
        message_count=2,
        content_hash=f"hash-{n}",
        token_estimate=5,
    )


# --- profiles --------------------------------------------------------------------------------


async def test_update_profile_and_read_status(harness: StoreHarness) -> None:
    store, user = harness.store, _user()
    await harness.add_profile(user)
    started = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    await store.update_profile(
        user, {"full_pass_status": "processing", "full_pass_started_at": started}
    )
    status = await store.get_profile_status(user)
    assert status is not None
    assert status["full_pass_status"] == "processing"
    assert parse_timestamp(status["full_pass_started_at"]) == started
    assert status["full_pass_error"] is None
    await store.update_profile(user, {"full_pass_status": "failed", "full_pass_error": "x: Y: z"})
    status = await store.get_profile_status(user)
    assert status is not None
    assert (status["full_pass_status"], status["full_pass_error"]) == ("failed", "x: Y: z")


async def test_profile_writes_without_a_row_raise(harness: StoreHarness) -> None:
    user = _user()
    with pytest.raises(ProfileNotFound, match=f"no user_profiles row for user {user}"):
        await harness.store.update_profile(user, {"memory_md": "# MEMORY"})
    assert await harness.store.get_profile_status(user) is None


async def test_profile_refuses_unknown_columns(harness: StoreHarness) -> None:
    user = _user()
    await harness.add_profile(user)
    with pytest.raises(StoreError, match="nickname"):
        await harness.store.update_profile(user, {"nickname": "x"})


# --- jobs ------------------------------------------------------------------------------------


async def test_enqueue_returns_the_active_job_until_it_finishes(harness: StoreHarness) -> None:
    store, user = harness.store, _user()
    job, created = await store.enqueue_job(_new(user, conversation_count=7))
    assert created
    assert (job.status, job.attempts, job.conversation_count) == (JobStatus.QUEUED, 0, 7)
    again, created_again = await store.enqueue_job(_new(user))
    assert not created_again
    assert again.id == job.id
    claimed = await store.claim_job(worker_id="w1", lease_seconds=60)
    assert claimed is not None
    assert claimed.id == job.id
    assert (await store.enqueue_job(_new(user)))[0].id == job.id  # running is still active
    assert await store.finish_job(job_id=job.id, worker_id="w1", status=JobStatus.COMPLETE)
    third, created_third = await store.enqueue_job(_new(user))
    assert created_third
    assert third.id != job.id
    latest = await store.latest_job_for_user(user)
    assert latest is not None
    assert latest.id == third.id
    fetched = await store.get_job(job.id)
    assert fetched is not None
    assert (fetched.status, fetched.progress) == (JobStatus.COMPLETE, 100)
    assert fetched.completed_at is not None
    assert await store.get_job(str(uuid.uuid4())) is None


async def test_claim_takes_due_jobs_oldest_first_and_counts_attempts(
    harness: StoreHarness,
) -> None:
    store = harness.store
    first, _ = await store.enqueue_job(_new(_user()))
    await asyncio.sleep(0.002)
    second, _ = await store.enqueue_job(_new(_user()))
    a = await store.claim_job(worker_id="w1", lease_seconds=60)
    b = await store.claim_job(worker_id="w2", lease_seconds=60)
    assert a is not None
    assert b is not None
    assert (a.id, b.id) == (first.id, second.id)
    assert (a.status, a.lease_owner, a.attempts) == (JobStatus.RUNNING, "w1", 1)
    assert a.lease_expires_at is not None
    assert a.started_at is not None
    assert await store.claim_job(worker_id="w3", lease_seconds=60) is None


async def test_an_expired_lease_is_reclaimed_and_the_old_owner_loses_it(
    harness: StoreHarness,
) -> None:
    store = harness.store
    job, _ = await store.enqueue_job(_new(_user()))
    held = await store.claim_job(worker_id="old", lease_seconds=0)
    assert held is not None
    await asyncio.sleep(0.01)
    taken = await store.claim_job(worker_id="new", lease_seconds=60)
    assert taken is not None
    assert (taken.id, taken.lease_owner, taken.attempts) == (job.id, "new", 2)
    assert not await store.renew_lease(job_id=job.id, worker_id="old", lease_seconds=60)
    assert not await store.finish_job(job_id=job.id, worker_id="old", status=JobStatus.FAILED)
    assert await store.renew_lease(job_id=job.id, worker_id="new", lease_seconds=60)
    current = await store.get_job(job.id)
    assert current is not None
    assert (current.status, current.lease_owner) == (JobStatus.RUNNING, "new")


async def test_a_worker_never_takes_over_its_own_lapsed_job(harness: StoreHarness) -> None:
    """Its lease lapsed while the store was out of reach, but the worker still runs the job: a
    second slot of the same worker must not start it again (another worker may take it)."""
    store = harness.store
    job, _ = await store.enqueue_job(_new(_user()))
    held = await store.claim_job(worker_id="w1", lease_seconds=0)
    assert held is not None
    await asyncio.sleep(0.01)
    assert await store.claim_job(worker_id="w1", lease_seconds=60) is None
    assert await store.claim_job(worker_id="w1", lease_seconds=60, small_only=True) is None
    assert await store.renew_lease(job_id=job.id, worker_id="w1", lease_seconds=60)
    current = await store.get_job(job.id)
    assert current is not None
    assert (current.lease_owner, current.attempts) == ("w1", 1)


async def test_release_and_requeue_with_and_without_counting(harness: StoreHarness) -> None:
    store = harness.store
    job, _ = await store.enqueue_job(_new(_user()))
    assert await store.claim_job(worker_id="w", lease_seconds=60) is not None
    released = await store.finish_job(
        job_id=job.id, worker_id="w", status=JobStatus.QUEUED, count_attempt=False
    )
    assert released
    after = await store.get_job(job.id)
    assert after is not None
    assert (after.status, after.attempts, after.lease_owner) == (JobStatus.QUEUED, 0, None)

    assert await store.claim_job(worker_id="w", lease_seconds=60) is not None
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await store.finish_job(
        job_id=job.id, worker_id="w", status=JobStatus.QUEUED, error_message="boom", run_after=later
    )
    backoff = await store.get_job(job.id)
    assert backoff is not None
    assert (backoff.attempts, backoff.error_message) == (1, "boom")
    assert backoff.run_after is not None
    assert abs((backoff.run_after - later).total_seconds()) < 1
    assert await store.claim_job(worker_id="w", lease_seconds=60) is None  # not due yet


async def test_failed_jobs_can_be_requeued_others_cannot(harness: StoreHarness) -> None:
    store = harness.store
    job, _ = await store.enqueue_job(_new(_user()))
    with pytest.raises(StoreError, match="only a failed job"):
        await store.requeue_job(job.id)
    assert await store.claim_job(worker_id="w", lease_seconds=60) is not None
    assert await store.finish_job(
        job_id=job.id, worker_id="w", status=JobStatus.FAILED, error_message="extract_facts: X: y"
    )
    failed = await store.get_job(job.id)
    assert failed is not None
    assert (failed.status, failed.error_message) == (JobStatus.FAILED, "extract_facts: X: y")
    assert failed.completed_at is not None
    requeued = await store.requeue_job(job.id)
    assert (requeued.status, requeued.attempts, requeued.error_message) == (
        JobStatus.QUEUED,
        0,
        None,
    )
    assert await store.claim_job(worker_id="w", lease_seconds=60) is not None
    with pytest.raises(JobNotFound):
        await store.requeue_job(str(uuid.uuid4()))


async def test_update_job_sets_progress_and_refuses_other_columns(harness: StoreHarness) -> None:
    store = harness.store
    job, _ = await store.enqueue_job(_new(_user()))
    await store.update_job(
        job.id,
        {"current_step": "extract_facts", "progress": 40, "chunk_count": 12, "stats": {"a": 1}},
    )
    updated = await store.get_job(job.id)
    assert updated is not None
    assert (updated.current_step, updated.progress, updated.chunk_count) == (
        "extract_facts",
        40,
        12,
    )
    assert updated.stats == {"a": 1}
    with pytest.raises(StoreError, match="status"):
        await store.update_job(job.id, {"status": "complete"})
    with pytest.raises(JobNotFound):
        await store.update_job(str(uuid.uuid4()), {"progress": 1})


# --- chunks ----------------------------------------------------------------------------------


async def test_upsert_chunks_is_idempotent_and_commit_removes_stale_rows(
    harness: StoreHarness,
) -> None:
    store, user = harness.store, _user()
    old_job, new_job = str(uuid.uuid4()), str(uuid.uuid4())
    old = [_chunk(user, n) for n in range(5)]
    await store.upsert_chunks(user_id=user, job_id=old_job, chunks=old)
    assert await store.commit_chunks(user_id=user, job_id=old_job) == 0
    assert await store.count_chunks(user) == 5
    # A re-run writes an overlapping set: the same ids are updated, never duplicated.
    fresh = [_chunk(user, n, content="edited") for n in range(3, 130)]
    await store.upsert_chunks(user_id=user, job_id=new_job, chunks=fresh)
    await store.upsert_chunks(user_id=user, job_id=new_job, chunks=fresh)
    assert await store.count_chunks(user) == 130  # 0..2 from the old import are still there
    assert await store.commit_chunks(user_id=user, job_id=new_job) == 3
    assert await store.count_chunks(user) == 127
    assert await store.commit_chunks(user_id=user, job_id=new_job) == 0
    # Committed: a rollback of it changes nothing.
    assert await store.rollback_chunks(user_id=user, job_id=new_job) == (0, 0)
    assert await store.count_chunks(user) == 127
    other = _user()
    await store.upsert_chunks(user_id=other, job_id=old_job, chunks=[_chunk(other, 1)])
    assert await store.commit_chunks(user_id=user, job_id=new_job) == 0
    assert await store.count_chunks(other) == 1


async def test_a_failed_import_rolls_back_to_the_last_complete_one(harness: StoreHarness) -> None:
    store, user = harness.store, _user()
    old_job, new_job = str(uuid.uuid4()), str(uuid.uuid4())
    await store.upsert_chunks(
        user_id=user, job_id=old_job, chunks=[_chunk(user, n) for n in range(5)]
    )
    await store.commit_chunks(user_id=user, job_id=old_job)
    # The new import got part of the way: it re-tagged rows 3 and 4 and added 5..39.
    partial = [_chunk(user, n) for n in range(3, 40)]
    await store.upsert_chunks(user_id=user, job_id=new_job, chunks=partial)
    assert await store.count_chunks(user) == 40
    assert await store.rollback_chunks(user_id=user, job_id=new_job) == (35, 2)
    assert await store.count_chunks(user) == 5
    assert await store.rollback_chunks(user_id=user, job_id=new_job) == (0, 0)
    # Every remaining row is the old import's again: committing it removes nothing.
    assert await store.commit_chunks(user_id=user, job_id=old_job) == 0
    assert await store.count_chunks(user) == 5


async def test_a_first_import_that_fails_leaves_no_partial_set(harness: StoreHarness) -> None:
    store, user = harness.store, _user()
    job = str(uuid.uuid4())
    await store.upsert_chunks(user_id=user, job_id=job, chunks=[_chunk(user, n) for n in range(7)])
    assert await store.rollback_chunks(user_id=user, job_id=job) == (7, 0)
    assert await store.count_chunks(user) == 0


async def test_the_same_chunk_twice_in_one_write_is_written_once(harness: StoreHarness) -> None:
    # An export may hold one conversation twice: the same ids, in one batch.
    store, user = harness.store, _user()
    twice = [_chunk(user, n) for n in (1, 2, 1, 2, 3)]
    await store.upsert_chunks(user_id=user, job_id=str(uuid.uuid4()), chunks=twice)
    assert await store.count_chunks(user) == 3


# --- fact cache ------------------------------------------------------------------------------


async def test_fact_cache_roundtrip_by_user_and_extractor_version(harness: StoreHarness) -> None:
    store, user = harness.store, _user()
    facts = [
        Fact(
            category=FactCategory.PEOPLE,
            text="Has a sister, Ana.",
            conversation_id="c1",
            date=date(2025, 5, 1),
        ),
        Fact(category=FactCategory.ABOUT_ME, text="Lives in Porto.", from_signal=True),
    ]
    entries = {f"h{n}": facts if n == 0 else [] for n in range(150)}
    await store.put_cached_facts(user_id=user, extractor_version="x1", entries=entries)
    await store.put_cached_facts(user_id=user, extractor_version="x1", entries={"h1": facts[:1]})
    got = await store.get_cached_facts(
        user_id=user, extractor_version="x1", content_hashes=[*entries, "missing"]
    )
    assert set(got) == set(entries)
    assert got["h0"] == facts
    assert got["h1"] == facts[:1]
    assert got["h2"] == []
    assert (
        await store.get_cached_facts(user_id=user, extractor_version="x2", content_hashes=["h0"])
        == {}
    )
    assert (
        await store.get_cached_facts(user_id=_user(), extractor_version="x1", content_hashes=["h0"])
        == {}
    )


# The ways an entry can fail to decode that both stores can hold (PostgreSQL's jsonb always
# parses; an entry that is not JSON at all is the local store's own test).
_CORRUPT = {
    "unknown_category": '[{"category": "Hobbies", "text": "secret words"}]',
    "missing_text": '[{"category": "People"}]',
    "bad_date": '[{"category": "People", "text": "secret words", "date": "last spring"}]',
    "not_a_list": '{"category": "People", "text": "secret words"}',
    "not_an_object": '["secret words"]',
}


@pytest.mark.parametrize("kind", sorted(_CORRUPT))
async def test_an_entry_that_does_not_decode_is_a_logged_miss_then_replaced(
    harness: StoreHarness, kind: str
) -> None:
    store, user = harness.store, _user()
    good = [Fact(category=FactCategory.PEOPLE, text="Has a sister, Ana.")]
    await store.put_cached_facts(user_id=user, extractor_version="x1", entries={"good": good})
    bad_hash = "b" * 64
    harness.put_raw_cache_entry(user, bad_hash, "x1", _CORRUPT[kind])
    with capture_logs() as logs:
        got = await store.get_cached_facts(
            user_id=user, extractor_version="x1", content_hashes=["good", bad_hash]
        )
    assert got == {"good": good}
    assert logs == [
        {
            "event": "fact_cache.invalid_entry",
            "log_level": "warning",
            "user_id": user,
            "content_hash": "b" * 12,
            "extractor_version": "x1",
            "reason": kind,
        }
    ]
    assert "secret words" not in repr(logs)
    # Extracted again, the chunk's entry is replaced and read back.
    fresh = [Fact(category=FactCategory.PROJECTS, text="Builds a kiln.", date=date(2025, 1, 2))]
    await store.put_cached_facts(user_id=user, extractor_version="x1", entries={bad_hash: fresh})
    again = await store.get_cached_facts(
        user_id=user, extractor_version="x1", content_hashes=[bad_hash]
    )
    assert again == {bad_hash: fresh}


async def _scan(store: Store, **kw: object) -> list[list[FactCacheEntry]]:
    return [page async for page in store.scan_fact_cache(**kw)]  # type: ignore[arg-type]


async def test_scan_pages_through_every_entry_in_key_order(harness: StoreHarness) -> None:
    store = harness.store
    first, second = sorted([_user(), _user()])
    fact = [Fact(category=FactCategory.ABOUT_ME, text="Lives in Porto.")]
    for version in ("x1", "x2"):
        entries = {f"h{n:02d}": fact for n in range(12)}
        await store.put_cached_facts(user_id=first, extractor_version=version, entries=entries)
    await store.put_cached_facts(user_id=second, extractor_version="x2", entries={"h00": fact})
    harness.put_raw_cache_entry(first, "h05x", "x2", _CORRUPT["unknown_category"])
    harness.put_raw_cache_entry(second, "h99", "x1", _CORRUPT["missing_text"])

    pages = await _scan(store, user_id=first, page_size=5)
    assert [len(page) for page in pages] == [5, 5, 5, 5, 5]
    keys = [(e.key.content_hash, e.key.extractor_version) for page in pages for e in page]
    assert keys == sorted(keys)
    assert len(keys) == 25
    assert {e.key.user_id for page in pages for e in page} == {first}
    problems = {e.key.content_hash: e.problem for page in pages for e in page if e.problem}
    assert problems == {"h05x": "unknown_category"}

    everyone = [e for page in await _scan(store, page_size=4) for e in page]
    assert [e.key for e in everyone] == sorted(
        (e.key for e in everyone),
        key=lambda k: (k.user_id, k.content_hash, k.extractor_version),
    )
    assert len(everyone) == 27
    assert [(e.key.content_hash, e.problem) for e in everyone if e.key.user_id == second] == [
        ("h00", None),
        ("h99", "missing_text"),
    ]
    assert await _scan(store, user_id=_user()) == []


async def test_scan_reads_past_a_server_row_cap(harness: StoreHarness) -> None:
    """PostgREST silently caps a read at 1,000 rows: a page asked for more is short but is not
    the last; nothing may be skipped."""
    store, user = harness.store, _user()
    entries = {f"h{n:04d}": [] for n in range(1_050)}
    await store.put_cached_facts(user_id=user, extractor_version="x1", entries=entries)
    pages = await _scan(store, user_id=user, page_size=5_000)
    assert sum(len(page) for page in pages) == 1_050
    assert {e.key.content_hash for page in pages for e in page} == set(entries)


async def test_delete_entries_by_key_in_batches(harness: StoreHarness) -> None:
    store, user, other = harness.store, _user(), _user()
    fact = [Fact(category=FactCategory.ABOUT_ME, text="Lives in Porto.")]
    entries = {f"h{n:03d}": fact for n in range(160)}
    for version in ("x1", "x2"):
        await store.put_cached_facts(user_id=user, extractor_version=version, entries=entries)
    await store.put_cached_facts(user_id=other, extractor_version="x1", entries=entries)
    doomed = [FactCacheKey(user, f"h{n:03d}", "x1") for n in range(150)]
    missing = FactCacheKey(user, "nope", "x1")
    assert await store.delete_fact_cache_entries([*doomed, doomed[0], missing]) == 150
    assert await store.delete_fact_cache_entries(doomed) == 0
    left = [e.key for page in await _scan(store, user_id=user) for e in page]
    assert len(left) == 170
    assert not set(doomed) & set(left)
    assert sum(len(page) for page in await _scan(store, user_id=other)) == 160
    assert await store.delete_fact_cache_entries([]) == 0


# --- exports ---------------------------------------------------------------------------------


async def test_download_export_copies_the_bytes(harness: StoreHarness, tmp_path: Path) -> None:
    user = _user()
    source = tmp_path / "source.json"
    payload = b'[{"title": "x"}]' * 50_000
    source.write_bytes(payload)
    harness.put_export(f"imports/{user}/1700000000-conversations.json", source)
    dest = tmp_path / "downloaded"
    size = await harness.store.download_export(
        f"imports/{user}/1700000000-conversations.json", dest
    )
    assert size == len(payload)
    assert dest.read_bytes() == payload
    with pytest.raises(ExportNotFound):
        await harness.store.download_export(f"imports/{user}/nope.json", tmp_path / "n")


async def test_ping(harness: StoreHarness) -> None:
    await harness.store.ping()


async def test_count_jobs_by_status_names_every_status(harness: StoreHarness) -> None:
    store = harness.store
    before = await store.count_jobs_by_status()
    assert set(before) == {status.value for status in JobStatus}
    await store.enqueue_job(_new(_user()))
    await store.enqueue_job(_new(_user()))
    after = await store.count_jobs_by_status()
    assert after["queued"] == before["queued"] + 2
    assert sum(after.values()) == sum(before.values()) + 2


async def test_last_finished_job_is_the_latest_complete_or_failed(harness: StoreHarness) -> None:
    store = harness.store
    user = _user()
    assert await store.last_finished_job(user) is None
    first, _ = await store.enqueue_job(_new(user))
    assert await store.claim_job(worker_id="w", lease_seconds=60) is not None
    assert await store.last_finished_job(user) is None  # running is not finished
    assert await store.finish_job(job_id=first.id, worker_id="w", status=JobStatus.COMPLETE)
    second, _ = await store.enqueue_job(_new(user))
    assert await store.claim_job(worker_id="w", lease_seconds=60) is not None
    assert await store.finish_job(job_id=second.id, worker_id="w", status=JobStatus.FAILED)
    latest = await store.last_finished_job(user)
    assert latest is not None
    assert (latest.id, latest.status) == (second.id, JobStatus.FAILED)
    assert await store.last_finished_job(_user()) is None
