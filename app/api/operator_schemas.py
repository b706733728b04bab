"""Request and response bodies of the operator endpoints (issue 11)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.api.schemas import JobView
from app.bulk_retry import BulkRetryReport, RetryItem
from app.domain import STEPS
from app.fleet import CancelOutcome, FailedJobQuery, JobEvent, parse_moment
from app.forgetting import ForgetReport

__all__ = [
    "BulkRetryRequest",
    "BulkRetryView",
    "CancelView",
    "ForgetView",
    "JobEventView",
    "JobEventsView",
]


class JobEventView(BaseModel):
    id: int
    kind: str
    attempt: int
    worker_id: str | None
    step: str | None
    at: datetime
    detail: dict[str, Any]

    @classmethod
    def of(cls, event: JobEvent) -> JobEventView:
        return cls(
            id=event.id,
            kind=event.kind,
            attempt=event.attempt,
            worker_id=event.worker_id,
            step=event.step,
            at=event.at,
            detail=event.detail,
        )


class JobEventsView(BaseModel):
    job_id: str
    events: list[JobEventView]


class BulkRetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    since: str | None = Field(
        default=None,
        max_length=64,
        description="Failed at or after: a duration before now (`30m`, `2h`, `1d`) or ISO 8601.",
        examples=["2h"],
    )
    until: str | None = Field(
        default=None, max_length=64, description="Failed before: a duration or ISO 8601."
    )
    error_contains: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A case-insensitive substring of the error (no wildcards).",
    )
    step: str | None = Field(default=None, description="The step the error names.")
    user_id: UUID | None = None
    dry_run: bool = Field(default=False, description="List what would be retried; change nothing.")
    limit: int | None = Field(default=None, ge=1, le=10_000, description="Queue at most this many.")

    @field_validator("step")
    @classmethod
    def _known_step(cls, value: str | None) -> str | None:
        if value is not None and value not in STEPS:
            raise ValueError(f"unknown step {value!r} (steps: {', '.join(STEPS)})")
        return value

    def query(self, now: datetime) -> FailedJobQuery:
        return FailedJobQuery(
            since=parse_moment(self.since, now=now, field_name="since") if self.since else None,
            until=parse_moment(self.until, now=now, field_name="until") if self.until else None,
            error_contains=self.error_contains,
            step=self.step,
            user_id=str(self.user_id) if self.user_id else None,
        )


class BulkRetryItemView(BaseModel):
    job_id: str
    user_id: str
    failed_at: datetime | None
    step: str | None
    error: str | None
    outcome: Literal["queued", "would_queue", "skipped"]
    reason: str | None

    @classmethod
    def of(cls, item: RetryItem) -> BulkRetryItemView:
        job = item.job
        return cls(
            job_id=job.job_id,
            user_id=job.user_id,
            failed_at=job.failed_at,
            step=job.step,
            error=job.error_message,
            outcome=item.outcome,
            reason=item.reason,
        )


class BulkRetryView(BaseModel):
    dry_run: bool
    filters: dict[str, str]
    matched: int
    queued: int = Field(description="Queued (or, in a dry run, that would be).")
    skipped: int
    jobs: list[BulkRetryItemView]

    @classmethod
    def of(cls, report: BulkRetryReport) -> BulkRetryView:
        return cls(
            dry_run=report.dry_run,
            filters=report.query.describe(),
            matched=report.matched,
            queued=report.queued,
            skipped=report.skipped,
            jobs=[BulkRetryItemView.of(item) for item in report.items],
        )


class CancelView(BaseModel):
    outcome: CancelOutcome = Field(
        description="canceled: withdrawn at once; cancel_requested: the running job stops at its "
        "next call or step boundary; already_canceled: nothing to do."
    )
    job: JobView


class RemovedCounts(BaseModel):
    jobs: int
    events: int
    fact_cache: int
    chunks: int
    temp_dirs: int


class ForgetView(BaseModel):
    user_id: str
    removed: RemovedCounts
    chunks_included: bool
    canceled_job_id: str | None
    profile: str = Field(description="What became of the profile row (kept: it is the product's).")

    @classmethod
    def of(cls, report: ForgetReport) -> ForgetView:
        counts = report.counts
        return cls(
            user_id=report.user_id,
            removed=RemovedCounts(
                jobs=counts.jobs,
                events=counts.events,
                fact_cache=counts.fact_cache,
                chunks=counts.chunks,
                temp_dirs=report.temp_dirs,
            ),
            chunks_included=report.chunks_included,
            canceled_job_id=report.canceled_job.id if report.canceled_job else None,
            profile="kept as it is: the row and its portrait are the product's",
        )
