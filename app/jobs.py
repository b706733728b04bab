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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from app.alerts import Alerter
from app.breaker import Outage, ProviderBreaker
from app.config import Settings
from app.domain import FullPassStatus, Job, JobStatus
from app.errors import (
    AppError,
    AttemptsExhausted,
    BadExport,
    ConfigError,
    ExportNotFound,
    JobStalled,
    LLMFatal,
    LLMRefused,
    ProfileNotFound,
    StoreError,
    StoreUnavailable,
)
from app.metrics import METRICS
from app.ports import LLM, Store
from app.processors.context import JobContext, Pipeline, StepFailed

__all__ = ["JobRunner", "failure_message", "is_permanent"]

log = structlog.get_logger(__name__)

MAX_ERROR_CHARS = 500
_PERMANENT = (
    BadExport,
    ExportNotFound,
    ProfileNotFound,
    LLMFatal,
    LLMRefused,
    ConfigError,
    AttemptsExhausted,
)


def failure_message(step: str | None, error: BaseException) -> str:
    """`"<step>: <ErrorType>: <message>"`, at most 500 characters (DESIGN §3), for people.

    An error we did not expect (a bug, a library's own exception) is not shown as Python text:
    its type and traceback go to the logs (`job.unexpected_error`), the person reads what to do.
    """
    if isinstance(error, AppError):
        kind, detail = type(error).__name__, error.message
    else:
        kind = "InternalError"
        detail = (
            "the service hit an unexpected error in this step (logged with this job's id); "
            "retry the job, and report it if it fails the same way again"
        )
    text = f"{step or 'unknown'}: {kind}: {detail or 'no detail'}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def is_permanent(error: BaseException) -> bool:
    """True when trying the same job again cannot help (bad input, bad key, missing profile)."""
    if isinstance(error, _PERMANENT):
        return True
    return isinstance(error, StoreError) and not isinstance(error, StoreUnavailable)


@dataclass
class _Running:
    """A job this runner holds, with why its work may be cancelled from outside."""

    job: Job
    ctx: JobContext
    lease_lost: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: str | None = None  # the step it stalled in


class JobRunner:
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
        self._stopping = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._held: dict[str, _Running] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._paused = False
        if breaker is not None:
            breaker.subscribe(self._on_provider_change)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._claim_loop(), name="job-runner")
        slots = self.settings.max_concurrent_jobs
        log.info("runner.started", worker_id=self.worker_id, slots=slots)

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop claiming; give running jobs the grace period (SHUTDOWN_GRACE_SECONDS unless
        `grace` says otherwise: 0 on Ctrl-C); then release what is left to the queue."""
        self._stopping.set()
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
        log.info("runner.stopped", worker_id=self.worker_id)

    # --- claiming --------------------------------------------------------------------------

    def _provider_down(self) -> bool:
        down = self.breaker is not None and self.breaker.state == "open"
        if down != self._paused:
            self._paused = down
            log.info("runner.claiming_paused" if down else "runner.claiming_resumed")
        return down

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            claimed = False
            if not self._provider_down() and len(self._running) < self.settings.max_concurrent_jobs:
                claimed = await self._claim_one()
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.settings.poll_seconds)

    async def _claim_one(self) -> bool:
        try:
            job = await self.store.claim_job(
                worker_id=self.worker_id, lease_seconds=self.settings.lease_seconds
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
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return True

    # --- one job ---------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        with structlog.contextvars.bound_contextvars(job_id=job.id, user_id=job.user_id):
            log.info("job.claimed", attempt=job.attempts, max_attempts=job.max_attempts)
            started = time.monotonic()
            ctx = JobContext(
                job=job,
                store=self.store,
                llm=self.llm,
                settings=self.settings,
                alerter=self.alerter,
            )
            held = self._held[job.id] = _Running(job, ctx)
            work = asyncio.create_task(self._work(job, ctx))
            heartbeat = asyncio.create_task(self._heartbeat(held, work))
            outcome = "released"
            METRICS.jobs_in_flight.inc()
            try:
                await work
            except asyncio.CancelledError:
                if held.lease_lost.is_set():
                    # Another worker took the job over (our lease expired): hands off.
                    outcome = "lease_lost"
                    log.warning("job.lease_lost")
                    return
                if held.stalled is not None and not self._stopping.is_set():
                    outcome = await self._fail(job, ctx, self._stall_error(held.stalled))
                    return
                work.cancel()
                await self._release(job)
                raise
            except Exception as exc:
                outcome = await self._fail(job, ctx, exc)
            else:
                await self._finish(job, JobStatus.COMPLETE)
                outcome = "complete"
            finally:
                self._held.pop(job.id, None)
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
                METRICS.jobs_in_flight.dec()
                METRICS.jobs_finished.labels(outcome=outcome).inc()
                await self._summarise(job.id, outcome, ctx, time.monotonic() - started)

    def _stall_error(self, step: str) -> StepFailed:
        minutes = self.settings.job_stall_seconds / 60
        return StepFailed(
            step,
            JobStalled(
                f"stalled in {step}: no progress for {minutes:g} min (JOB_STALL_SECONDS); "
                "this attempt was stopped and the job will be retried"
            ),
        )

    async def _summarise(self, job_id: str, outcome: str, ctx: JobContext, seconds: float) -> None:
        """The job's canonical line: one event that tells its whole story, from its row."""
        try:
            row = await self.store.get_job(job_id)
        except AppError:
            row = None
        fields: dict[str, object] = {
            "outcome": outcome,
            "duration_ms": int(seconds * 1000),
            "last_step": ctx.current_step,
            "durations_ms": ctx.durations_ms,
        }
        if row is not None:
            fields |= {
                "status": row.status.value,
                "attempt": row.attempts,
                "conversations": row.conversation_count,
                "messages": row.message_count,
                "chunks": row.chunk_count,
                "llm_provider": row.llm_provider,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "cost_usd": row.cost_usd,
                "error": row.error_message,
            }
        log.info("job.finished", **fields)

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

    async def _heartbeat(self, held: _Running, work: asyncio.Task[None]) -> None:
        """Renew the lease on its own clock, however long a step or an LLM call takes; and watch
        for a stall (no progress for JOB_STALL_SECONDS while the provider is answering)."""
        interval = self.settings.heartbeat_seconds
        ctx = held.ctx
        while not work.done():
            await asyncio.sleep(interval)
            if self._provider_down():
                ctx.pulse()  # waiting for the provider is not standing still
            elif ctx.idle_seconds() > self.settings.job_stall_seconds:
                held.stalled = ctx.current_step or "download_conversations"
                log.error("job.stalled", step=held.stalled, idle_s=round(ctx.idle_seconds()))
                work.cancel()
                return
            try:
                renewed = await self.store.renew_lease(
                    job_id=held.job.id,
                    worker_id=self.worker_id,
                    lease_seconds=self.settings.lease_seconds,
                )
            except AppError as exc:
                log.warning("job.heartbeat_failed", error_type=type(exc).__name__)
                continue
            if not renewed:
                held.lease_lost.set()
                work.cancel()
                return

    async def _on_provider_change(self, outage: Outage | None) -> None:
        """Once per outage: the alert, and a note on every job this runner holds."""
        if outage is not None:
            await self.alerter.provider_unavailable(outage)
        for held in list(self._held.values()):
            held.ctx.pulse()
            await held.ctx.set_note(outage.note() if outage is not None else None)

    # --- endings ---------------------------------------------------------------------------

    async def _finish(
        self,
        job: Job,
        status: JobStatus,
        *,
        error_message: str | None = None,
        run_after: datetime | None = None,
        count_attempt: bool = True,
    ) -> bool:
        try:
            return await self.store.finish_job(
                job_id=job.id,
                worker_id=self.worker_id,
                status=status,
                error_message=error_message,
                run_after=run_after,
                count_attempt=count_attempt,
            )
        except AppError as exc:
            log.error("job.finish_failed", status=status.value, error=exc.message)
            return False

    async def _note(self, job: Job, fields: dict[str, object]) -> None:
        try:
            await self.store.update_job(job.id, fields)
        except AppError as exc:
            log.warning("job.note_write_failed", error_type=type(exc).__name__)

    async def _release(self, job: Job) -> None:
        note = "released at shutdown (a deploy or a restart); it resumes where it was"
        await self._note(job, {"current_step": None, "note": note})
        released = await self._finish(job, JobStatus.QUEUED, count_attempt=False)
        log.info("job.released", released=released)

    async def _fail(self, job: Job, ctx: JobContext, exc: Exception) -> str:
        """Retry later or fail for good; returns which ("retry" or "failed")."""
        step: str | None
        error: BaseException
        if isinstance(exc, StepFailed):
            step, error = exc.step, exc.error
        else:
            step, error = ctx.current_step, exc
        message = failure_message(step, error)
        final = is_permanent(error) or job.attempts >= job.max_attempts
        if not isinstance(error, AppError):
            log.error(
                "job.unexpected_error", step=step, error_type=type(error).__name__, exc_info=error
            )
        if not final:
            backoff = self.settings.retry_backoff_seconds * 2 ** max(0, job.attempts - 1)
            run_after = datetime.now(UTC) + timedelta(seconds=backoff)
            note = (
                f"queued to retry (attempt {job.attempts + 1} of {job.max_attempts}) at "
                f"{run_after:%H:%M:%S} UTC, after {step or 'a step'} failed"
            )
            await self._note(job, {"current_step": None, "progress": 0, "note": note})
            await self._finish(job, JobStatus.QUEUED, error_message=message, run_after=run_after)
            log.warning("job.retry_scheduled", step=step, error=message, backoff_seconds=backoff)
            return "retry"
        # The error and current_step name the same step (the steps overlap: the row's step
        # may have moved on to a later one while an earlier one failed).
        await self._note(job, {"current_step": step, "note": None})
        await self._roll_back_chunks(job, ctx)
        try:
            await self.store.update_profile(
                job.user_id,
                {"full_pass_status": FullPassStatus.FAILED.value, "full_pass_error": message},
            )
        except AppError as profile_error:
            log.error("job.status_write_failed", error=profile_error.message)
        await self._finish(job, JobStatus.FAILED, error_message=message)
        log.error("job.failed", step=step, error=message, attempts=job.attempts)
        await self.alerter.job_failed(job, step=step, error=message)
        return "failed"

    async def _roll_back_chunks(self, job: Job, ctx: JobContext) -> None:
        """A pass that fails for good leaves the user's chunks as the last complete import
        left them: the rows it wrote but never committed go, the ones it re-tagged go back."""
        if ctx.checkpoints.get("chunks") == "committed":
            return
        try:
            removed, restored = await self.store.rollback_chunks(user_id=job.user_id, job_id=job.id)
        except AppError as exc:
            log.error("job.chunk_rollback_failed", error=exc.message)
            return
        if removed or restored:
            log.info("job.chunks_rolled_back", removed=removed, restored=restored)
