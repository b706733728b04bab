"""Jobs for the ops page's tests, put in a real `LocalStore` the way the service would leave
them: a failed job with its trail, a running one, a queued one with an export to process."""

from __future__ import annotations

import uuid
from importlib import resources
from typing import Any

from app.adapters.local_store import LocalStore
from app.domain import Job, JobStatus, NewJob

__all__ = ["FAILED_ERROR", "failed_job", "queued_job", "running_job"]

FAILED_ERROR = (
    "extract_facts: LLMUnavailable: 12 of 40 chunks could not be extracted because the provider "
    "did not answer (12 overloaded); the job is retried and pays only for them"
)


async def _new(store: LocalStore, *, export: bool = False) -> Job:
    user = str(uuid.uuid4())
    await store.ensure_profile(user)
    path = f"imports/{user}/export.json"
    if export:
        sample = resources.files("app.sample_data").joinpath("sample-export.json")
        with resources.as_file(sample) as source:
            store.put_export(path, source)
    job, _ = await store.enqueue_job(NewJob(user_id=user, storage_path=path))
    return job


async def _claim(store: LocalStore, job: Job, worker: str) -> Job:
    claimed = await store.claim_job(worker_id=worker, lease_seconds=600)
    assert claimed is not None
    assert claimed.id == job.id, "seed jobs one at a time: the claim must take this one"
    await store.append_job_event(
        job_id=job.id, user_id=job.user_id, kind="claimed", attempt=1, worker_id=worker
    )
    return claimed


async def failed_job(store: LocalStore, *, error: str = FAILED_ERROR) -> Job:
    """A job that failed in extract_facts after its download (of 300 MB: retried, it needs a
    general slot, not one kept for small imports), with the trail a runner writes."""
    job = await _claim(store, await _new(store), "seed-worker")
    events: list[tuple[str, str | None, dict[str, Any]]] = [
        ("step_started", "download_conversations", {}),
        ("step_completed", "download_conversations", {"bytes": 2048, "duration_ms": 140}),
        ("step_started", "extract_facts", {}),
        ("step_failed", "extract_facts", {"error": error}),
        ("failed", None, {"error": error}),
    ]
    for kind, step, detail in events:
        await store.append_job_event(
            job_id=job.id,
            user_id=job.user_id,
            kind=kind,
            attempt=1,
            worker_id="seed-worker",
            step=step,
            detail=detail,
        )
    stats = {"durations_ms": {"download_conversations": 140, "chunk_conversations": 2300}}
    await store.update_job(
        job.id, {"current_step": "extract_facts", "stats": stats, "export_bytes": 300 * 2**20}
    )
    assert await store.finish_job(
        job_id=job.id, worker_id="seed-worker", status=JobStatus.FAILED, error_message=error
    )
    found = await store.get_job(job.id)
    assert found is not None
    return found


async def running_job(store: LocalStore, **fields: Any) -> Job:
    """A job a worker holds, in a step, with what the row says about it (`fields`)."""
    job = await _claim(store, await _new(store), "seed-worker")
    if fields:
        await store.update_job(job.id, fields)
    found = await store.get_job(job.id)
    assert found is not None
    return found


async def queued_job(store: LocalStore) -> Job:
    """A queued job whose export is in local storage (the bundled sample), ready to run."""
    return await _new(store, export=True)
