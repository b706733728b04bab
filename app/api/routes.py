"""Thin routes (DESIGN §5): validate, call the store, shape the reply."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import structlog
from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import Authorized, ServicesDep
from app.api.paths import validate_storage_path
from app.api.schemas import ErrorResponse, FullPassView, JobView, ProcessAccepted, ProcessRequest
from app.api.views import full_pass_view, retry_failed_job
from app.domain import FullPassStatus, NewJob
from app.errors import JobNotFound, ProfileNotFound
from app.metrics import METRICS, REGISTRY

__all__ = ["router"]

log = structlog.get_logger(__name__)

router = APIRouter()

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 502, 503)
}


@router.get("/health", tags=["ops"])
async def health() -> dict[str, str]:
    """Liveness: the process answers. Cheap by design (Render polls it)."""
    return {"status": "ok"}


@router.get("/ready", tags=["ops"], dependencies=[Authorized], responses=_ERRORS)
async def ready(services: ServicesDep) -> dict[str, object]:
    """Readiness: the store answers. `provider` is the LLM breaker's state: while it is open
    (the provider keeps failing) jobs wait and none is claimed — the service is still ready."""
    await services.store.ping()
    breaker = services.breaker
    return {
        "status": "ready",
        "store": type(services.store).__name__,
        "llm": services.llm.provider,
        "provider": breaker.to_json() if breaker is not None else {"state": "closed"},
    }


@router.get(
    "/metrics",
    dependencies=[Authorized],
    responses={**_ERRORS, 200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    response_class=Response,
    tags=["ops"],
)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics: jobs by status, step durations, LLM calls, tokens, USD, cache hits."""
    METRICS.set_jobs(await services.store.count_jobs_by_status())
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/process-full-v2",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Authorized],
    responses=_ERRORS,
    tags=["full pass"],
)
async def process_full_v2(body: ProcessRequest, services: ServicesDep) -> ProcessAccepted:
    """Queue a full pass for the user, or return the one already queued or running."""
    user_id = str(body.user_id)
    storage_path = validate_storage_path(
        body.storage_path, user_id=user_id, allowed_buckets=services.settings.allowed_buckets
    )
    store = services.store
    if await store.get_profile_status(user_id) is None:
        raise ProfileNotFound(
            f"no user_profiles row for user {user_id}: create the profile before importing"
        )
    job, created = await store.enqueue_job(
        NewJob(
            user_id=user_id,
            storage_path=storage_path,
            conversation_count=body.conversation_count,
            message_count=body.message_count,
            max_attempts=services.settings.max_attempts,
            force=body.force,
        )
    )
    if created:
        await store.update_profile(
            user_id,
            {
                "full_pass_status": FullPassStatus.PROCESSING.value,
                "full_pass_started_at": datetime.now(UTC),
                "full_pass_error": None,
            },
        )
    log.info("job.requested", job_id=job.id, user_id=user_id, created=created)
    return ProcessAccepted(job_id=job.id, user_id=user_id, created=created, job=JobView.of(job))


@router.get("/jobs/{job_id}", dependencies=[Authorized], responses=_ERRORS, tags=["full pass"])
async def get_job(job_id: UUID, services: ServicesDep) -> JobView:
    job = await services.store.get_job(str(job_id))
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    return JobView.of(job)


@router.post(
    "/jobs/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Authorized],
    responses={**_ERRORS, 409: {"model": ErrorResponse}},
    tags=["full pass"],
)
async def retry_job(job_id: UUID, services: ServicesDep) -> JobView:
    """Put a failed job back on the queue (operator action after fixing the cause)."""
    return JobView.of(await retry_failed_job(services.store, str(job_id)))


@router.get(
    "/users/{user_id}/full-pass", dependencies=[Authorized], responses=_ERRORS, tags=["full pass"]
)
async def get_full_pass(user_id: UUID, services: ServicesDep) -> FullPassView:
    return await full_pass_view(services.store, str(user_id))
