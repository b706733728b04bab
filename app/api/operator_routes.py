"""Operator endpoints (issue 11): a job's audit trail, bulk retry, cancel, forget a user.
Thin: validate, call the operation the CLI shares, shape the reply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from app.api.deps import Authorized, ServicesDep
from app.api.operator_schemas import (
    BulkRetryRequest,
    BulkRetryView,
    CancelView,
    ForgetView,
    JobEventsView,
    JobEventView,
)
from app.api.schemas import ErrorResponse, JobView
from app.bulk_retry import bulk_retry
from app.cancellation import request_cancel
from app.errors import JobNotFound
from app.forgetting import forget_user_data

__all__ = ["ACTOR", "router"]

ACTOR = "operator:api"

router = APIRouter(tags=["operators"], dependencies=[Authorized])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 409, 413, 422, 502, 503)
}


@router.get("/jobs/{job_id}/events", responses=_ERRORS)
async def job_events(job_id: UUID, services: ServicesDep) -> JobEventsView:
    """The job's audit trail, oldest first: claims, steps, waits, retries, cancel, the end."""
    key = str(job_id)
    if await services.store.get_job(key) is None:
        raise JobNotFound(f"no job {job_id}")
    events = await services.store.list_job_events(key)
    return JobEventsView(job_id=key, events=[JobEventView.of(e) for e in events])


@router.post("/jobs/retry", responses=_ERRORS)
async def retry_failed_jobs(body: BulkRetryRequest, services: ServicesDep) -> BulkRetryView:
    """Retry every failed job the filters select (only failed jobs; a user's latest only).
    With `dry_run`, list what would be retried."""
    report = await bulk_retry(
        services.store,
        body.query(datetime.now(UTC)),
        actor=ACTOR,
        dry_run=body.dry_run,
        limit=body.limit,
    )
    return BulkRetryView.of(report)


@router.post("/jobs/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, responses=_ERRORS)
async def cancel_job(job_id: UUID, services: ServicesDep) -> CancelView:
    """Withdraw a queued job at once, or have a running one stopped at its next call or step
    boundary (`cancel_requested`). The profile says `failed`, with words saying it was canceled."""
    job, outcome = await request_cancel(services.store, str(job_id), actor=ACTOR)
    return CancelView(outcome=outcome, job=JobView.of(job))


@router.delete("/users/{user_id}/data", responses=_ERRORS)
async def forget_user(
    user_id: UUID,
    services: ServicesDep,
    cancel: Annotated[
        bool, Query(description="Cancel the user's queued or running job first.")
    ] = False,
    chunks: Annotated[
        bool, Query(description="Also delete their conversation_chunks (the product's).")
    ] = False,
) -> ForgetView:
    """Remove the service's own data for the user (job events, jobs, cached facts, temp files);
    409 while a job of theirs is queued or running, unless `cancel` (a running job stops at its
    next boundary: repeat the request then)."""
    report = await forget_user_data(
        services.store, str(user_id), actor=ACTOR, cancel=cancel, chunks=chunks
    )
    return ForgetView.of(report)
