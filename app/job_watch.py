"""A running job's heartbeat: renew the lease on its own clock, however long a step or an LLM call
takes, and watch — for an operator's cancel, a stall (no progress for JOB_STALL_SECONDS while the
provider answers: the attempt is stopped) and a stuck step (running past the threshold learned
from history: flagged once, on the job, in the trail, on /metrics, with one alert; not stopped).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from app.alerts import Alerter
from app.config import Settings
from app.domain import Job
from app.errors import AppError
from app.events import JobEvents
from app.fleet import EventKind
from app.ports import Store
from app.processors.context import JobContext
from app.step_stats import StepThresholds

__all__ = ["Held", "watch"]

log = structlog.get_logger(__name__)


@dataclass
class Held:
    """A job a runner holds, and why its work may have been cancelled from outside."""

    job: Job
    ctx: JobContext
    thresholds: StepThresholds | None = None
    lease_lost: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: str | None = None  # the step it stalled in
    canceled: bool = False  # an operator asked
    stuck: set[str] = field(default_factory=set)  # steps already flagged


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes} min"


async def _flag_stuck(held: Held, events: JobEvents, alerter: Alerter) -> None:
    ctx, thresholds = held.ctx, held.thresholds
    step = ctx.current_step
    if thresholds is None or step is None or step in held.stuck:
        return
    elapsed, units = ctx.step_seconds(), ctx.units(step)
    if not thresholds.is_stuck(step, elapsed_seconds=elapsed, units=units):
        return
    held.stuck.add(step)
    limit = thresholds.seconds(step, units)
    known = thresholds.steps.get(step)
    basis = "learned from earlier jobs" if known and known.learned else "too little history yet"
    note = (
        f"stuck in {step}: running {_duration(elapsed)}, past the {_duration(limit)} this step "
        f"takes at most on this much work ({basis}); still running"
    )
    ctx.counts["stuck"] = {"step": step, "elapsed_s": round(elapsed), "threshold_s": round(limit)}
    await ctx.set_note(note)
    await events.record(
        held.job, EventKind.STUCK, step=step, elapsed_s=round(elapsed), threshold_s=round(limit)
    )
    log.error("job.stuck", step=step, elapsed_s=round(elapsed), threshold_s=round(limit))
    await alerter.job_stuck(held.job, step=step, note=note)


async def _cancel_requested(store: Store, job_id: str) -> bool:
    try:
        row = await store.get_job(job_id)
    except AppError:
        return False
    return row is not None and row.cancel_requested_at is not None


async def watch(
    held: Held,
    work: asyncio.Task[None],
    *,
    store: Store,
    settings: Settings,
    worker_id: str,
    events: JobEvents,
    alerter: Alerter,
    provider_down: Callable[[], bool],
) -> None:
    interval = settings.heartbeat_seconds
    ctx = held.ctx
    while not work.done():
        await asyncio.sleep(interval)
        if provider_down():
            ctx.pulse()  # waiting for the provider is neither standing still nor stuck
            ctx.step_waited_s += interval
        elif ctx.idle_seconds() > settings.job_stall_seconds:
            held.stalled = ctx.current_step or "download_conversations"
            log.error("job.stalled", step=held.stalled, idle_s=round(ctx.idle_seconds()))
            await events.record(
                held.job, EventKind.STALLED, step=held.stalled, idle_s=round(ctx.idle_seconds())
            )
            work.cancel()
            return
        else:
            await _flag_stuck(held, events, alerter)
        if await _cancel_requested(store, held.job.id):
            held.canceled = True
            log.info("job.cancel_seen", step=ctx.current_step)
            work.cancel()
            return
        try:
            renewed = await store.renew_lease(
                job_id=held.job.id, worker_id=worker_id, lease_seconds=settings.lease_seconds
            )
        except AppError as exc:
            log.warning("job.heartbeat_failed", error_type=type(exc).__name__)
            continue
        if not renewed:
            held.lease_lost.set()
            work.cancel()
            return
