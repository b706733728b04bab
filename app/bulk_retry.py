"""Bulk retry (issue 11): after an incident, put every failed job that matches a few filters
back on the queue, each through the single retry's own operation (`retry_failed_job`).

A failed job is skipped, and the report says why, when the user has a later job: an active one
(the store would refuse a second), or a newer finished one (retrying the older import would
overwrite the newer results). So of a user's several failures only the latest is retried. A dry
run answers the same question without changing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import structlog

from app.api.views import retry_failed_job
from app.errors import JobConflict, JobNotFound, ProfileNotFound
from app.fleet import FailedJob, FailedJobQuery
from app.metrics import METRICS
from app.ports import Store

__all__ = ["BulkRetryReport", "RetryItem", "bulk_retry"]

log = structlog.get_logger(__name__)

Outcome = Literal["queued", "would_queue", "skipped"]


@dataclass(frozen=True, slots=True)
class RetryItem:
    job: FailedJob
    outcome: Outcome
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BulkRetryReport:
    dry_run: bool
    query: FailedJobQuery
    items: list[RetryItem] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return len(self.items)

    @property
    def queued(self) -> int:
        return sum(item.outcome != "skipped" for item in self.items)

    @property
    def skipped(self) -> int:
        return sum(item.outcome == "skipped" for item in self.items)


async def _retry_one(store: Store, job: FailedJob, *, actor: str) -> RetryItem:
    try:
        await retry_failed_job(store, job.job_id, actor=actor)
    except ProfileNotFound:
        # Requeued, but the profile could not say so: the run will fail on it again, loudly.
        return RetryItem(job, "queued", "the user has no user_profiles row")
    except JobConflict as exc:
        return RetryItem(job, "skipped", exc.message)
    except JobNotFound:
        return RetryItem(job, "skipped", "the job no longer exists")
    return RetryItem(job, "queued")


async def bulk_retry(
    store: Store,
    query: FailedJobQuery,
    *,
    actor: str,
    dry_run: bool = False,
    limit: int | None = None,
) -> BulkRetryReport:
    """Retry (or, with `dry_run`, list) the failed jobs `query` selects, oldest failure first;
    at most `limit` are queued, the rest reported as skipped."""
    items: list[RetryItem] = []
    queued = 0
    for job in await store.find_failed_jobs(query):
        if job.blocked_by is not None:
            items.append(RetryItem(job, "skipped", job.blocked_by))
        elif limit is not None and queued >= limit:
            items.append(RetryItem(job, "skipped", f"over the limit of {limit}"))
        elif dry_run:
            items.append(RetryItem(job, "would_queue"))
            queued += 1
        else:
            item = await _retry_one(store, job, actor=actor)
            items.append(item)
            queued += item.outcome == "queued"
    report = BulkRetryReport(dry_run=dry_run, query=query, items=items)
    if not dry_run:
        METRICS.bulk_retries.labels(outcome="queued").inc(report.queued)
        METRICS.bulk_retries.labels(outcome="skipped").inc(report.skipped)
    log.info(
        "jobs.bulk_retry",
        by=actor,
        dry_run=dry_run,
        matched=report.matched,
        queued=report.queued,
        skipped=report.skipped,
        **query.describe(),
    )
    return report
