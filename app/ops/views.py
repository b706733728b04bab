"""What the ops page shows, read from the store and the provider breaker: plain values the
templates draw. Nothing here is guessed: a figure the job row or its trail does not hold is None,
and the page shows a dash.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from app.breaker import Outage, ProviderBreaker
from app.domain import STEPS, Job, JobStatus
from app.errors import JobNotFound
from app.fleet import EventKind, JobEvent
from app.ops.charts import (
    BarChart,
    HBar,
    by_day,
    by_hour,
    chart_since,
    cost_chart,
    jobs_chart,
    step_chart,
)
from app.ports import Store

__all__ = [
    "JobPage",
    "Overview",
    "RunningJob",
    "describe_error",
    "eta_seconds",
    "is_stuck",
    "job_page",
    "overview",
]

RUNNING_SHOWN = 50
FAILED_PAGE = 20
_MIN_PROGRESS_FOR_ETA = 5


def describe_error(text: str | None) -> tuple[str | None, str | None, str]:
    """`"<step>: <ErrorType>: <message>"` (DESIGN §3) → (step, type, message); text in another
    shape is all message."""
    parts = (text or "").split(": ", 2)
    if len(parts) == 3 and (parts[0] in STEPS or parts[0] == "queued"):
        return parts[0], parts[1], parts[2]
    return None, None, text or ""


def _attempt_started(job: Job, events: list[JobEvent]) -> datetime | None:
    """When this attempt began: its `claimed` event; else, on a first attempt that no retry
    reset, the row's `started_at` (set by the first claim and never after)."""
    claims = [e.at for e in events if e.kind == EventKind.CLAIMED and e.attempt == job.attempts]
    if claims:
        return claims[-1]
    if job.attempts == 1 and not any(e.kind == EventKind.REQUEUED for e in events):
        return job.started_at
    return None


def eta_seconds(job: Job, events: list[JobEvent], *, now: datetime) -> float | None:
    """Time left at the pace of this attempt so far (progress per second since its claim); None
    while the job waits for the provider, before it has moved enough to tell, or at the end."""
    started = _attempt_started(job, events)
    waiting = (job.note or "").startswith("waiting for")
    if started is None or waiting or not _MIN_PROGRESS_FOR_ETA <= job.progress < 100:
        return None
    elapsed = (now - started).total_seconds()
    return max(0.0, elapsed * (100 - job.progress) / job.progress) if elapsed > 0 else None


def is_stuck(job: Job, events: list[JobEvent]) -> bool:
    """A `stuck` event for the step the job is in now, in this attempt: the runner's own word."""
    return any(
        e.kind == EventKind.STUCK and e.attempt == job.attempts and e.step == job.current_step
        for e in events
    )


def _chunks(job: Job) -> tuple[int | None, int | None, int]:
    """(chunks extracted, chunks in the export, chunks failed for a recorded reason).

    The export's chunks are known once parsing has ended (the row's `chunk_count`); how many are
    done only once extraction has: the step ends when every chunk is extracted or failed for a
    recorded reason (DESIGN §2), so its counts mean all of them. Its own `chunks` count is not
    used for the total: it includes the batches of the user's signals.
    """
    counts = job.stats.get("counts")
    extraction = counts.get("extract_facts") if isinstance(counts, dict) else None
    if not isinstance(extraction, dict):
        return None, job.chunk_count, 0
    failed = extraction.get("failed")
    total = job.chunk_count if job.chunk_count is not None else extraction.get("chunks")
    total = total if isinstance(total, int) else None
    return total, total, failed if isinstance(failed, int) else 0


@dataclass(frozen=True, slots=True)
class RunningJob:
    job: Job
    chunks_done: int | None
    chunks_total: int | None
    chunks_failed: int
    eta_s: float | None
    stuck: bool

    @property
    def waiting(self) -> bool:
        return (self.job.note or "").startswith("waiting for")


async def _running(store: Store, jobs: list[Job], now: datetime) -> list[RunningJob]:
    trails = await asyncio.gather(*(store.list_job_events(job.id) for job in jobs))
    shown = []
    for job, events in zip(jobs, trails, strict=True):
        eta = eta_seconds(job, events, now=now)
        shown.append(RunningJob(job, *_chunks(job), eta, is_stuck(job, events)))
    return shown


@dataclass(frozen=True, slots=True)
class Overview:
    now: datetime
    counts: dict[str, int]
    outage: Outage | None  # this instance's provider breaker: open while set
    charts: list[BarChart]
    running: list[RunningJob]
    failed: list[Job]
    failed_offset: int
    more_failed: bool


async def overview(
    store: Store, breaker: ProviderBreaker | None, *, now: datetime, failed_offset: int = 0
) -> Overview:
    counts = await store.count_jobs_by_status()
    hours = await store.finished_jobs_by_hour(chart_since(now))
    hourly, daily = by_hour(hours, now=now), by_day(hours, now=now)
    charts = [
        jobs_chart(hourly, title="Jobs ended, last 24 h", hourly=True),
        cost_chart(hourly, title="LLM spend, last 24 h", hourly=True),
        jobs_chart(daily, title="Jobs ended, last 7 days", hourly=False),
        cost_chart(daily, title="LLM spend, last 7 days", hourly=False),
    ]
    running = await store.list_jobs(JobStatus.RUNNING, limit=RUNNING_SHOWN)
    failed = await store.list_jobs(JobStatus.FAILED, limit=FAILED_PAGE + 1, offset=failed_offset)
    return Overview(
        now=now,
        counts=counts,
        outage=breaker.outage if breaker is not None else None,
        charts=charts,
        running=await _running(store, running, now),
        failed=failed[:FAILED_PAGE],
        failed_offset=failed_offset,
        more_failed=len(failed) > FAILED_PAGE,
    )


@dataclass(frozen=True, slots=True)
class JobPage:
    job: Job
    events: list[JobEvent]
    steps: list[HBar]
    running: RunningJob | None


async def job_page(store: Store, job_id: str, *, now: datetime) -> JobPage:
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    events = await store.list_job_events(job_id)
    durations = job.stats.get("durations_ms")
    running = None
    if job.status is JobStatus.RUNNING:
        eta = eta_seconds(job, events, now=now)
        running = RunningJob(job, *_chunks(job), eta, is_stuck(job, events))
    return JobPage(
        job=job,
        events=events,
        steps=step_chart(durations if isinstance(durations, dict) else {}),
        running=running,
    )
