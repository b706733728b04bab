"""What operators and the runner need from a store beyond the pipeline (issue 11), kept apart
from `app/ports.py` (which re-exports it: `Store` includes it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from app.domain import Job
from app.fleet import CancelOutcome, FailedJob, FailedJobQuery, ForgetCounts, JobEvent

__all__ = ["OperatorStore"]


class OperatorStore(Protocol):
    """What operators and the runner need beyond the pipeline (issue 11): the audit trail,
    cancel, the bulk-retry search, forgetting a user, and stuck detection's history."""

    async def append_job_event(
        self,
        *,
        job_id: str,
        user_id: str,
        kind: str,
        attempt: int,
        worker_id: str | None,
        step: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one row to the job's trail (`at` is the store's clock). Never updates one."""
        ...

    async def list_job_events(self, job_id: str) -> list[JobEvent]:
        """The job's whole trail in the order it was written, however long."""
        ...

    async def cancel_job(self, job_id: str, *, message: str) -> tuple[Job, CancelOutcome]:
        """Withdraw a queued job at once (status canceled, `message` as its error); on a running
        job set `cancel_requested_at` for its runner, unless its lease has expired (no runner
        left): then it is canceled at once. `JobConflict` for a complete or failed job."""
        ...

    async def find_failed_jobs(self, query: FailedJobQuery) -> list[FailedJob]:
        """Failed jobs matching every filter of `query` exactly, oldest failure first."""
        ...

    async def forget_user(self, user_id: str, *, include_chunks: bool = False) -> ForgetCounts:
        """Delete the user's job events, jobs and cached facts (and chunks if asked), at once.

        `JobConflict` while one of their jobs is queued or running. Never touches the profile.
        """
        ...

    async def step_duration_samples(
        self, steps: Sequence[str], *, per_step: int = 500
    ) -> dict[str, list[tuple[float, float | None]]]:
        """Per step, the latest `(duration_ms, units)` of `step_completed` events, newest first."""
        ...
