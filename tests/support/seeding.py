"""Jobs put on a real store in the state a test needs, for the operator's tests (API, CLI and
the operations behind them): each for a new user with a profile."""

from __future__ import annotations

import uuid

from app.domain import Job, JobStatus, NewJob
from app.ports import Store

__all__ = ["seed_job"]


async def seed_job(
    store: Store, *, run: bool = False, fail: str | None = None, trail: bool = False
) -> Job:
    """A queued job; with `run` (or `fail`) the next queued job claimed by worker `w` — the one
    just queued unless the test left another — and with `fail` that job failed with `fail` as
    its error. `trail` also writes the events the runner would have: `claimed`, `step_failed`."""
    user = str(uuid.uuid4())
    await store.ensure_profile(user)
    job, _ = await store.enqueue_job(NewJob(user_id=user, storage_path=f"imports/{user}/e"))
    if run or fail:
        claimed = await store.claim_job(worker_id="w", lease_seconds=600)
        assert claimed is not None
        job = claimed
        if trail:
            await store.append_job_event(
                job_id=job.id, user_id=job.user_id, kind="claimed", attempt=1, worker_id="w"
            )
    if fail:
        if trail:
            await store.append_job_event(
                job_id=job.id,
                user_id=job.user_id,
                kind="step_failed",
                attempt=1,
                worker_id="w",
                step=fail.split(":")[0],
                detail={"error": fail, "duration_ms": 42},
            )
        assert await store.finish_job(
            job_id=job.id, worker_id="w", status=JobStatus.FAILED, error_message=fail
        )
    return job
