"""Operations the API and the CLI share: reading a user's full-pass state, retrying a failed job
(bulk retries go through the same `retry_failed_job`: app/bulk_retry.py)."""

from __future__ import annotations

import structlog

from app.api.schemas import FullPassView, JobView
from app.domain import FullPassStatus, Job
from app.errors import NotFound
from app.events import JobEvents
from app.fleet import EventKind
from app.ports import Store

__all__ = ["full_pass_view", "retry_failed_job"]

log = structlog.get_logger(__name__)


async def full_pass_view(store: Store, user_id: str) -> FullPassView:
    profile = await store.get_profile_status(user_id)
    job = await store.latest_job_for_user(user_id)
    if profile is None and job is None:
        raise NotFound(f"no profile and no full-pass job for user {user_id}")
    profile = profile or {}
    return FullPassView(
        user_id=user_id,
        full_pass_status=profile.get("full_pass_status"),
        full_pass_started_at=profile.get("full_pass_started_at"),
        full_pass_completed_at=profile.get("full_pass_completed_at"),
        full_pass_error=profile.get("full_pass_error"),
        job=JobView.of(job) if job else None,
    )


async def retry_failed_job(store: Store, job_id: str, *, actor: str = "operator") -> Job:
    """Put a failed job back on the queue (after its cause was fixed); the profile shows it,
    and the job's trail says who requeued it."""
    job = await store.requeue_job(job_id)
    await JobEvents(store, actor).record(job, EventKind.REQUEUED)
    await store.update_profile(
        job.user_id,
        {"full_pass_status": FullPassStatus.PROCESSING.value, "full_pass_error": None},
    )
    log.info("job.retry_requested", job_id=job.id, user_id=job.user_id)
    return job
