"""Cancel (issue 11): what an operator's request does, and what the runner does when it stops
a job whose cancel was requested. Shared by the API, the CLI and the runner.

The profile says so in words. `full_pass_status` may only be pending, processing, complete or
failed: a canceled import is written as `failed` with `full_pass_error` saying it was canceled —
the one status that means "this import did not finish and nothing more will happen", and the error
is already what the product shows a person. (`complete` would claim results that are not there;
`processing` would wait forever; `pending` would say no import was ever made.) The text keeps the
`"<step>: <ErrorType>: <message>"` shape of DESIGN §3, with `queued` for a job that never started.
"""

from __future__ import annotations

import structlog

from app.domain import FullPassStatus, Job, JobStatus
from app.errors import AppError, JobNotFound
from app.events import JobEvents
from app.fleet import CancelOutcome, EventKind
from app.metrics import METRICS
from app.ports import Store

__all__ = ["cancel_message", "finish_canceled", "request_cancel"]

log = structlog.get_logger(__name__)


def cancel_message(step: str | None) -> str:
    if step is None:
        return (
            "queued: Canceled: the import was canceled by an operator before it started; "
            "send the export again to process it"
        )
    return (
        f"{step}: Canceled: the import was canceled by an operator while it ran; nothing more "
        "will run for it; send the export again to process it"
    )


async def _mark_profile(store: Store, job: Job, message: str) -> None:
    try:
        await store.update_profile(
            job.user_id,
            {"full_pass_status": FullPassStatus.FAILED.value, "full_pass_error": message},
        )
    except AppError as exc:  # the job is canceled either way; the profile row is the product's
        log.warning("job.cancel_profile_write_failed", job_id=job.id, error=exc.message)


async def request_cancel(store: Store, job_id: str, *, actor: str) -> tuple[Job, CancelOutcome]:
    """Withdraw a queued job now (profile updated), or ask a running job's runner to stop it.

    `JobConflict` for a complete or failed job, `JobNotFound` for no job.
    """
    current = await store.get_job(job_id)
    if current is None:
        raise JobNotFound(f"no job {job_id}")
    step = current.current_step if current.status is JobStatus.RUNNING else None
    message = cancel_message(step)
    job, outcome = await store.cancel_job(job_id, message=message)
    events = JobEvents(store, actor)
    if outcome is not CancelOutcome.ALREADY_CANCELED:
        await events.record(job, EventKind.CANCEL_REQUESTED, step=job.current_step)
    if outcome is CancelOutcome.CANCELED:
        await _mark_profile(store, job, message)
        await events.record(job, EventKind.CANCELED, step=job.current_step, was=current.status)
    METRICS.cancels.labels(outcome=outcome.value).inc()
    log.info("job.cancel", job_id=job.id, user_id=job.user_id, outcome=outcome.value, by=actor)
    return job, outcome


async def finish_canceled(store: Store, events: JobEvents, job: Job, *, step: str | None) -> bool:
    """The runner's hook: stop `job` (whose `cancel_requested_at` it saw) at a boundary.

    Marks the job canceled (if this runner still holds it), writes the profile's words, and
    appends `canceled`. False when the lease was no longer this runner's. Never raises for a
    store error: it is logged, and the job is left for the lease to expire (the next claim
    sees the request and stops it again).
    """
    message = cancel_message(step)
    try:
        stopped = await store.finish_job(
            job_id=job.id,
            worker_id=events.worker_id,
            status=JobStatus.CANCELED,
            error_message=message,
        )
    except AppError as exc:
        log.error("job.cancel_finish_failed", job_id=job.id, error=exc.message)
        return False
    if stopped:
        await _mark_profile(store, job, message)
        await events.record(job, EventKind.CANCELED, step=step)
        METRICS.cancels.labels(outcome="stopped").inc()
        log.info("job.canceled", job_id=job.id, user_id=job.user_id, step=step)
    return stopped
