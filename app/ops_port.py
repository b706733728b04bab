"""What the ops page (`/ops`, app/ops/) needs from a store beyond the pipeline and the operator's
operations, kept apart like `app/operator_port.py` (`app/ports.py` re-exports it: `Store`
includes it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.domain import Job, JobStatus

__all__ = ["LIST_JOBS_MAX", "HourTotals", "OpsStore", "list_order_column"]

# One page of `list_jobs` at most: below PostgREST's default row cap (1,000).
LIST_JOBS_MAX = 500


def list_order_column(status: JobStatus) -> str:
    """The time `list_jobs` orders a status by, newest first; never NULL for that status:
    finished jobs by when they ended, running ones by their first claim, queued ones by when
    they were created."""
    if status is JobStatus.RUNNING:
        return "started_at"
    if status is JobStatus.QUEUED:
        return "created_at"
    return "completed_at"


@dataclass(frozen=True, slots=True)
class HourTotals:
    """Jobs that ended in one UTC hour (by their `completed_at`), and what they cost."""

    hour: datetime  # the hour's start, aware UTC
    complete: int = 0
    failed: int = 0
    canceled: int = 0
    cost_usd: float = 0.0


class OpsStore(Protocol):
    async def list_jobs(self, status: JobStatus, *, limit: int = 50, offset: int = 0) -> list[Job]:
        """One page of the jobs of `status`, newest first by `list_order_column(status)`, then
        by id (descending), so pages never overlap. `limit` is clamped to 1…`LIST_JOBS_MAX`."""
        ...

    async def finished_jobs_by_hour(self, since: datetime) -> list[HourTotals]:
        """Per UTC hour, oldest first, the jobs whose status is final (complete, failed,
        canceled) with `completed_at` at or after `since`, and the sum of their `cost_usd`.
        Hours without such a job are absent. A job put back on the queue by a retry has no
        `completed_at` any more and counts again when it ends."""
        ...
