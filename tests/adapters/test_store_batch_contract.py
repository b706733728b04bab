"""The batch tables (`llm_batches`, `llm_batch_requests`) as every `Store` must keep them: the
same tests against LocalStore (SQLite) and SupabaseStore (fake_postgrest on the migrated
PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest

from app.batch_port import LLMBatch
from app.domain import JobStatus, NewJob
from app.errors import StoreError
from tests.adapters.conftest import StoreHarness

pytestmark = pytest.mark.postgres


async def _job(harness: StoreHarness) -> str:
    user = str(uuid.uuid4())
    await harness.add_profile(user)
    job, _ = await harness.store.enqueue_job(
        NewJob(user_id=user, storage_path=f"imports/{user}/export.json")
    )
    return job.id


def _batch(job_id: str, n: int, kind: str = "extract") -> LLMBatch:
    return LLMBatch(
        id=str(uuid.uuid4()),
        job_id=job_id,
        kind=kind,
        state="submitting",
        request_count=n,  # type: ignore[arg-type]
    )


async def test_a_batch_is_recorded_before_submission_then_moves_on(harness: StoreHarness) -> None:
    store = harness.store
    job_id = await _job(harness)
    batch = _batch(job_id, 3)
    # 1,200 requests: more than one page of PostgREST's 1,000-row cap.
    requests = {f"r{i:04d}": [f"hash-{i}-a", f"hash-{i}-b"] for i in range(1_200)}
    await store.record_llm_batch(batch, requests)

    [recorded] = await store.list_llm_batches(job_id)
    assert (recorded.id, recorded.kind, recorded.state) == (batch.id, "extract", "submitting")
    assert recorded.provider_batch_id is None
    assert recorded.submitted_at is None
    assert recorded.ended_at is None
    assert recorded.created_at is not None
    assert await store.get_llm_batch_requests(batch.id) == requests

    await store.update_llm_batch(batch.id, state="in_progress", provider_batch_id="msgbatch_1")
    await store.update_llm_batch(
        batch.id, state="in_progress", counts={"processing": 2, "succeeded": 1}
    )
    [polled] = await store.list_llm_batches(job_id)
    assert polled.provider_batch_id == "msgbatch_1", "a later update keeps the provider's id"
    assert polled.submitted_at is not None
    assert dict(polled.counts) == {"processing": 2, "succeeded": 1}

    await store.update_llm_batch(batch.id, state="ended", counts={"succeeded": 3})
    [ended] = await store.list_llm_batches(job_id)
    assert ended.state == "ended"
    assert ended.ended_at is not None
    assert ended.submitted_at == polled.submitted_at
    assert await store.get_llm_batch_requests(batch.id) == requests, "kept until read"

    await store.update_llm_batch(batch.id, state="read")
    [read] = await store.list_llm_batches(job_id)
    assert read.state == "read"
    assert dict(read.counts) == {"succeeded": 3}
    assert await store.get_llm_batch_requests(batch.id) == {}, "read: its requests are gone"


async def test_batches_are_per_job_in_order_and_abandoning_drops_requests(
    harness: StoreHarness,
) -> None:
    store = harness.store
    job_a, job_b = await _job(harness), await _job(harness)
    first, second = _batch(job_a, 1), _batch(job_a, 1, kind="reduce")
    await store.record_llm_batch(first, {"a": ["h1"]})
    await store.record_llm_batch(second, {"b": ["h2"]})
    await store.record_llm_batch(_batch(job_b, 1), {"c": ["h3"]})

    listed = await store.list_llm_batches(job_a)
    assert [b.id for b in listed] == [first.id, second.id]
    assert [b.kind for b in listed] == ["extract", "reduce"]
    assert len(await store.list_llm_batches(job_b)) == 1

    await store.update_llm_batch(first.id, state="abandoned")
    assert await store.get_llm_batch_requests(first.id) == {}
    assert await store.get_llm_batch_requests(second.id) == {"b": ["h2"]}


async def test_recording_is_all_or_nothing_and_unknown_batches_are_errors(
    harness: StoreHarness,
) -> None:
    store = harness.store
    job_id = await _job(harness)
    batch = _batch(job_id, 1)
    await store.record_llm_batch(batch, {"a": ["h1"]})
    with pytest.raises(StoreError):
        await store.record_llm_batch(batch, {"b": ["h2"]})  # the same id twice
    assert await store.get_llm_batch_requests(batch.id) == {"a": ["h1"]}
    with pytest.raises(StoreError):
        await store.update_llm_batch(str(uuid.uuid4()), state="ended")


async def test_forgetting_the_user_forgets_the_jobs_batches(harness: StoreHarness) -> None:
    store = harness.store
    job_id = await _job(harness)
    job = await store.get_job(job_id)
    assert job is not None
    batch = _batch(job_id, 1)
    await store.record_llm_batch(batch, {"a": ["h1"]})
    claimed = await store.claim_job(worker_id="w", lease_seconds=60)
    assert claimed is not None
    assert claimed.id == job_id
    await store.finish_job(job_id=job_id, worker_id="w", status=JobStatus.COMPLETE)

    await store.forget_user(job.user_id)
    assert await store.list_llm_batches(job_id) == []
    assert await store.get_llm_batch_requests(batch.id) == {}
