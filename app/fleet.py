"""What an operator sees of the fleet of jobs (issue 11): the audit trail's events, the search
behind a bulk retry, what a cancel did, and what forgetting a user removed.

Plain values shared by both stores, the API, the CLI and the runner. Times are aware UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from app.errors import ValidationFailed

__all__ = [
    "CancelOutcome",
    "EventKind",
    "FailedJob",
    "FailedJobQuery",
    "ForgetCounts",
    "JobEvent",
    "parse_moment",
]


class EventKind(StrEnum):
    """One row of the trail per moment of a job's life (DESIGN §4)."""

    CLAIMED = "claimed"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"  # detail: duration_ms, units, the step's counts
    STEP_FAILED = "step_failed"
    RETRY_SCHEDULED = "retry_scheduled"
    RELEASED = "released"
    WAITING = "waiting"  # for the provider (breaker open)
    RESUMED = "resumed"
    STALLED = "stalled"
    STUCK = "stuck"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELED = "canceled"
    FAILED = "failed"
    COMPLETED = "completed"
    REQUEUED = "requeued"  # an operator's retry put the failed job back on the queue


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A row of `processing_job_events`. `kind` stays text: a trail written by a newer version
    must still be readable by an older one."""

    id: int
    job_id: str
    user_id: str
    kind: str
    attempt: int
    worker_id: str | None
    step: str | None
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FailedJobQuery:
    """Which failed jobs a bulk retry takes. Every filter is exact on both stores:

    `since` ≤ failed at < `until` (the job's `completed_at`); `error_contains` is a
    case-insensitive substring of the error, with no wildcards; `step` is the step the error
    names (`"<step>: <ErrorType>: …"`, DESIGN §3); `user_id` is the job's user.
    """

    since: datetime | None = None
    until: datetime | None = None
    error_contains: str | None = None
    step: str | None = None
    user_id: str | None = None

    def describe(self) -> dict[str, str]:
        shown = {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "error_contains": self.error_contains,
            "step": self.step,
            "user_id": self.user_id,
        }
        return {k: v for k, v in shown.items() if v is not None}


@dataclass(frozen=True, slots=True)
class FailedJob:
    """A failed job a search found, and whether a later job of the same user stands in its way:
    retrying an older import over a newer one would overwrite the newer results."""

    job_id: str
    user_id: str
    error_message: str | None
    attempts: int
    created_at: datetime
    failed_at: datetime | None
    later_job_id: str | None = None
    later_job_status: str | None = None

    @property
    def step(self) -> str | None:
        head, sep, _ = (self.error_message or "").partition(": ")
        return head if sep else None

    @property
    def blocked_by(self) -> str | None:
        """Why a retry would be refused, in words; None when it can be retried."""
        if self.later_job_id is None:
            return None
        if self.later_job_status in ("queued", "running"):
            return f"the user has an active job ({self.later_job_id}, {self.later_job_status})"
        return f"superseded by the user's later job {self.later_job_id} ({self.later_job_status})"


class CancelOutcome(StrEnum):
    CANCELED = "canceled"  # it was queued (or its worker was gone): withdrawn at once
    CANCEL_REQUESTED = "cancel_requested"  # it runs: the runner stops it at its next boundary
    ALREADY_CANCELED = "already_canceled"


@dataclass(frozen=True, slots=True)
class ForgetCounts:
    """Rows the store removed for one user (the service's own data, and chunks when asked)."""

    jobs: int = 0
    events: int = 0
    fact_cache: int = 0
    chunks: int = 0
    job_ids: tuple[str, ...] = ()


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str, *, now: datetime | None = None, field_name: str = "since") -> datetime:
    """`2h`, `30m`, `1d`, `90s`, `1w` (that long before now) or an ISO 8601 time (UTC unless it
    says otherwise) → an aware UTC datetime."""
    now = now or datetime.now(UTC)
    if match := _DURATION.match(text):
        seconds = float(match[1]) * _UNIT_SECONDS[match[2].lower()]
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"{field_name}: {text!r} is neither a duration (30m, 2h, 1d) nor an ISO 8601 time "
            "(2026-03-01T12:00:00Z)",
            field=field_name,
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
