"""The worker loop: claim due jobs, hold their lease by heartbeat, run the pipeline, finish.

A job's life is exact under restarts and outages:
- a deploy (SIGTERM) stops claiming, lets running work finish within the grace period, then
  releases the lease — the job goes back to the queue, the attempt is not counted, the profile stays
  `processing`;
- a crash leaves the lease to expire; any runner (this one restarted, or another instance) takes it;
- the provider being unavailable is not a failure: while the breaker (app/breaker.py) is open no
  job is claimed, running jobs wait with their lease renewed and a note saying so, and go on;
- a job whose progress stands still for JOB_STALL_SECONDS (waiting for the provider excluded)
  fails that attempt as stalled; a long, healthy pass is never cut for being long;
- a real failure counts an attempt and is retried after a backoff, unless it cannot succeed by
  retrying (a bad export, a rejected key); after the last attempt the job is failed for good, the
  profile says why, an import's uncommitted chunk rows are rolled back, and the alert webhook is
  told.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

import structlog

from app.alerts import Alerter
from app.breaker import Outage, ProviderBreaker
from app.cancellation import finish_canceled
from app.config import Settings
from app.domain import FullPassStatus, Job
from app.errors import AppError, AttemptsExhausted, ConfigError, JobStalled
from app.events import JobEvents
from app.fleet import EventKind
from app.job_endings import JobEndings, failure_message, is_permanent
from app.job_watch import Held, watch
from app.metrics import METRICS
from app.ports import LLM, Store
from app.processors.context import JobContext, NeedsLargeSlot, Pipeline, StepFailed
from app.step_stats import StepThresholds, load_step_thresholds

__all__ = ["JobRunner", "failure_message", "is_permanent"]

log = structlog.get_logger(__name__)


class JobRunner:
    """Claims jobs into MAX_CONCURRENT_JOBS slots for any job, plus SMALL_JOB_SLOTS kept for
    small imports (app/queue_order.py), so a 1 GB pass does not hold every small one back."""

    def __init__(
        self,
        *,
        store: Store,
        llm: LLM,
        settings: Settings,
        pipelines: Mapping[str, Pipeline],
        alerter: Alerter,
        worker_id: str | None = None,
        breaker: ProviderBreaker | None = None,
    ) -> None:
        self.store = store
        self.llm = llm
        self.settings = settings
        self.pipelines = pipelines
        self.alerter = alerter
        self.breaker = breaker
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.events = JobEvents(store, self.worker_id)
        self.endings = JobEndings(
            store=store, settings=settings, alerter=alerter, events=self.events, llm=llm
        )
        self._stopping = asyncio.Event()
        # Set when a slot frees (a job ended) or on stop: the claim loop looks again at once
        # instead of at its next poll, so queued jobs do not sit behind an idle slot.
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._held: dict[str, Held] = {}
        self._small: set[str] = set()  # jobs in a small-import slot
        self._loop_task: asyncio.Task[None] | None = None
        self._paused = False
        self._provider_lock = asyncio.Lock()
        self._announcing: asyncio.Task[None] | None = None
        self._announced: set[str] = set()  # jobs given a "waiting" event in this outage
        if breaker is not None:
            breaker.subscribe(self._on_provider_change)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._claim_loop(), name="job-runner")
        log.info(
            "runner.started",
            worker_id=self.worker_id,
            slots=self.settings.max_concurrent_jobs,
            small_slots=self.settings.small_job_slots,
        )

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop claiming; give running jobs the grace period (SHUTDOWN_GRACE_SECONDS unless
        `grace` says otherwise: 0 on Ctrl-C); then release what is left to the queue."""
        self._stopping.set()
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            log.info("runner.draining", jobs=len(self._running))
            wait = self.settings.shutdown_grace_seconds if grace is None else grace
            pending = set(self._running)
            if wait > 0:
                _, pending = await asyncio.wait(pending, timeout=wait)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._announcing is not None:
            self._announcing.cancel()
        log.info("runner.stopped", worker_id=self.worker_id)

    # --- claiming --------------------------------------------------------------------------

    def _provider_down(self) -> bool:
        down = self.breaker is not None and self.breaker.state == "open"
        if down != self._paused:
            self._paused = down
            log.info("runner.claiming_paused" if down else "runner.claiming_resumed")
        return down

    def _free_slot(self) -> str | None:
        """ "any", "small" (only a small import may take it), or None."""
        general = len(self._held) - len(self._small)
        if general < self.settings.max_concurrent_jobs:
            return "any"
        if len(self._small) < self.settings.small_job_slots:
            return "small"
        return None

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            claimed = False
            slot = None if self._provider_down() else self._free_slot()
            if slot is not None:
                claimed = await self._claim_one(small=slot == "small")
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)

    async def _claim_one(self, *, small: bool) -> bool:
        try:
            job = await self.store.claim_job(
                worker_id=self.worker_id,
                lease_seconds=self.settings.lease_seconds,
                small_only=small,
            )
        except AppError as exc:
            log.warning("runner.claim_failed", error_type=type(exc).__name__, error=exc.message)
            return False
        except Exception as exc:
            # Never let one bad claim end the loop: the runner would claim nothing more, silently.
            log.error("runner.claim_failed", error_type=type(exc).__name__, exc_info=exc)
            return False
        if job is None:
            return False
        if small:
            self._small.add(job.id)
        ctx = JobContext(
            job=job,
            store=self.store,
            llm=self.llm,
            settings=self.settings,
            alerter=self.alerter,
            events=self.events,
            small_slot=small,
        )
        self._held[job.id] = Held(job, ctx)
        task = asyncio.create_task(self._run(self._held[job.id]), name=f"job-{job.id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return True

    # --- one job ---------------------------------------------------------------------------

    async def _run(self, held: Held) -> None:
        job, ctx = held.job, held.ctx
        with structlog.contextvars.bound_contextvars(job_id=job.id, user_id=job.user_id):
            waited = METRICS.observe_queue_wait(job)
            log.info(
                "job.claimed",
                attempt=job.attempts,
                max_attempts=job.max_attempts,
                small_slot=ctx.small_slot,
                waited_s=round(waited, 1),
            )
            await self.events.record(
                job, EventKind.CLAIMED, small_slot=ctx.small_slot, waited_s=round(waited, 1)
            )
            started = time.monotonic()
            outcome = "released"
            METRICS.jobs_in_flight.inc()
            heartbeat: asyncio.Task[None] | None = None
            try:
                if job.cancel_requested_at is not None:
                    await finish_canceled(self.store, self.events, job, step=None)
                    outcome = "canceled"
                    return
                held.thresholds = await self._thresholds()
                work = asyncio.create_task(self._work(job, ctx))
                heartbeat = asyncio.create_task(
                    watch(
                        held,
                        work,
                        store=self.store,
                        settings=self.settings,
                        worker_id=self.worker_id,
                        events=self.events,
                        alerter=self.alerter,
                        provider_down=self._provider_down,
                    )
                )
                outcome = await self._outcome(held, work)
            finally:
                self._held.pop(job.id, None)
                self._small.discard(job.id)
                self._wake.set()
                if heartbeat is not None:
                    heartbeat.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await heartbeat
                METRICS.jobs_in_flight.dec()
                METRICS.jobs_finished.labels(outcome=outcome).inc()
                await self.endings.summarise(job.id, outcome, ctx, time.monotonic() - started)

    async def _outcome(self, held: Held, work: asyncio.Task[None]) -> str:
        job, ctx = held.job, held.ctx
        try:
            await work
        except asyncio.CancelledError:
            if held.lease_lost.is_set():
                # Another worker took the job over (our lease expired): hands off.
                log.warning("job.lease_lost")
                return "lease_lost"
            if self._stopping.is_set():
                work.cancel()
                await self.endings.release(job)
                raise
            if held.canceled:
                return await self.endings.cancel(job, ctx)
            if held.stalled is not None:
                return await self.endings.fail(job, ctx, self._stall_error(held.stalled))
            raise
        except NeedsLargeSlot as moved:
            note = (
                f"waiting for a slot for large imports: the export is {moved.megabytes:,.0f} MB "
                "(small-import slots take it no further than its download)"
            )
            return await self.endings.release(job, note=note, reason="needs a large slot")
        except Exception as exc:
            return await self.endings.fail(job, ctx, exc)
        return await self.endings.complete(job)

    async def _thresholds(self) -> StepThresholds | None:
        try:
            return await load_step_thresholds(self.store, self.settings)
        except AppError as exc:  # stuck detection is a help, never a reason to stop
            log.warning("runner.thresholds_unavailable", error=exc.message)
            return None

    def _stall_error(self, step: str) -> StepFailed:
        minutes = self.settings.job_stall_seconds / 60
        return StepFailed(
            step,
            JobStalled(
                f"stalled in {step}: no progress for {minutes:g} min (JOB_STALL_SECONDS); "
                "this attempt was stopped and the job will be retried"
            ),
        )

    async def _work(self, job: Job, ctx: JobContext) -> None:
        if job.attempts > job.max_attempts:
            # Claimed again after its lease expired on the last attempt: the worker died every
            # time (out of memory on this export, most likely). Running it again would too.
            raise StepFailed(
                job.current_step or "download_conversations",
                AttemptsExhausted(
                    f"the job was interrupted on each of its {job.max_attempts} attempts "
                    "(the worker stopped mid-run, e.g. out of memory); not trying again"
                ),
            )
        pipeline = self.pipelines.get(job.pipeline_version)
        if pipeline is None:
            raise StepFailed(
                "download_conversations",
                ConfigError(
                    f"job was created for pipeline {job.pipeline_version!r}, which this version "
                    f"of the service does not have ({', '.join(sorted(self.pipelines))})"
                ),
            )
        if job.note is not None:
            # A new attempt: what the last one left there (waiting for the provider, queued to
            # retry, released at shutdown) is over, and must not outlive it on a running job.
            await ctx.set_note(None)
        await self.store.update_profile(
            job.user_id,
            {
                "full_pass_status": FullPassStatus.PROCESSING.value,
                "full_pass_started_at": datetime.now(UTC),
                "full_pass_error": None,
            },
        )
        await pipeline(job, ctx)

    async def _on_provider_change(self, outage: Outage | None) -> None:
        """On every job this runner holds, the note at once. The outage itself — one alert, and
        a "waiting" event per job — once it has lasted PROVIDER_ALERT_AFTER_SECONDS; an opening
        that closes sooner (steady rate limiting) is only logged and noted."""
        async with self._provider_lock:
            for held in list(self._held.values()):
                held.ctx.pulse()
                await held.ctx.set_note(outage.note() if outage is not None else None)
            if self._announcing is not None:
                self._announcing.cancel()
                self._announcing = None
            if outage is not None:
                self._announcing = asyncio.create_task(self._announce(outage), name="outage-alert")
                return
            for held in list(self._held.values()):
                if held.job.id in self._announced:
                    await self.events.record(
                        held.job, EventKind.RESUMED, step=held.ctx.current_step
                    )
            self._announced.clear()

    async def _announce(self, outage: Outage) -> None:
        await asyncio.sleep(self.settings.provider_alert_after_seconds)
        async with self._provider_lock:
            self._announcing = None  # past cancelling: the outage is announced whole
            for held in list(self._held.values()):
                self._announced.add(held.job.id)
                await self.events.record(
                    held.job, EventKind.WAITING, step=held.ctx.current_step, reason=outage.reason
                )
            await self.alerter.provider_unavailable(outage)
