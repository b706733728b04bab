"""How a runner ends its hold on a job: complete, back in the queue (a retry, a release, a move to
a bigger slot), canceled, or failed for good — each with the job row, the profile, the audit
trail and the alert saying the same thing in words.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from app.alerts import Alerter
from app.cancellation import finish_canceled
from app.config import Settings
from app.domain import FullPassStatus, Job, JobStatus
from app.errors import (
    AppError,
    AttemptsExhausted,
    BadExport,
    ConfigError,
    ExportNotFound,
    LLMFatal,
    LLMRefused,
    ProfileNotFound,
    StoreError,
    StoreUnavailable,
)
from app.events import JobEvents
from app.fleet import EventKind
from app.ports import LLM, Store
from app.processors.context import JobContext, StepFailed

__all__ = ["JobEndings", "failure_message", "is_permanent"]

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


class JobEndings:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        alerter: Alerter,
        events: JobEvents,
        llm: LLM | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.alerter = alerter
        self.events = events
        self.llm = llm

    @property
    def worker_id(self) -> str:
        return self.events.worker_id

    async def finish(
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

    async def note(self, job: Job, fields: dict[str, object]) -> None:
        try:
            await self.store.update_job(job.id, fields)
        except AppError as exc:
            log.warning("job.note_write_failed", error_type=type(exc).__name__)

    async def complete(self, job: Job) -> str:
        await self.finish(job, JobStatus.COMPLETE)
        await self.events.record(job, EventKind.COMPLETED)
        return "complete"

    async def release(self, job: Job, *, note: str | None = None, reason: str = "shutdown") -> str:
        """Back to the queue without counting the attempt: a deploy, a restart, a bigger slot."""
        note = note or "released at shutdown (a deploy or a restart); it resumes where it was"
        await self.note(job, {"current_step": None, "note": note})
        released = await self.finish(job, JobStatus.QUEUED, count_attempt=False)
        await self.events.record(job, EventKind.RELEASED, reason=reason)
        log.info("job.released", released=released, reason=reason)
        return "released"

    async def cancel(self, job: Job, ctx: JobContext) -> str:
        """An operator asked: stop here, release what was held, say so in words."""
        await self.roll_back_chunks(job, ctx)
        await self.cancel_provider_batches(job)
        await finish_canceled(self.store, self.events, job, step=ctx.current_step)
        return "canceled"

    async def fail(self, job: Job, ctx: JobContext, exc: Exception) -> str:
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
            await self.note(job, {"current_step": None, "progress": 0, "note": note})
            await self.finish(job, JobStatus.QUEUED, error_message=message, run_after=run_after)
            await self.events.record(
                job, EventKind.RETRY_SCHEDULED, step=step, error=message, backoff_s=backoff
            )
            log.warning("job.retry_scheduled", step=step, error=message, backoff_seconds=backoff)
            return "retry"
        # The error and current_step name the same step (the steps overlap: the row's step
        # may have moved on to a later one while an earlier one failed).
        await self.note(job, {"current_step": step, "note": None})
        await self.roll_back_chunks(job, ctx)
        await self.cancel_provider_batches(job)
        try:
            await self.store.update_profile(
                job.user_id,
                {"full_pass_status": FullPassStatus.FAILED.value, "full_pass_error": message},
            )
        except AppError as profile_error:
            log.error("job.status_write_failed", error=profile_error.message)
        await self.finish(job, JobStatus.FAILED, error_message=message)
        await self.events.record(job, EventKind.FAILED, step=step, error=message)
        log.error("job.failed", step=step, error=message, attempts=job.attempts)
        await self.alerter.job_failed(job, step=step, error=message)
        return "failed"

    async def roll_back_chunks(self, job: Job, ctx: JobContext) -> None:
        """A pass that ends before its chunks were committed leaves the user's chunks as the
        last complete import left them: the rows it created go, the ones it re-tagged go back."""
        if ctx.checkpoints.get("chunks") == "committed":
            return
        try:
            removed, restored = await self.store.rollback_chunks(user_id=job.user_id, job_id=job.id)
        except AppError as exc:
            log.error("job.chunk_rollback_failed", error=exc.message)
            return
        if removed or restored:
            log.info("job.chunks_rolled_back", removed=removed, restored=restored)

    async def cancel_provider_batches(self, job: Job) -> None:
        """A job that ends for good stops its Message Batches still running at the provider:
        nothing will read them, and they would be billed."""
        batches = self.llm.batches() if self.llm is not None else None
        if batches is None:
            return
        try:
            running = [
                b
                for b in await self.store.list_llm_batches(job.id)
                if b.state == "in_progress" and b.provider_batch_id
            ]
        except AppError as exc:
            log.warning("job.batches_unreadable", error=exc.message)
            return
        for batch in running:
            assert batch.provider_batch_id is not None
            try:
                await batches.cancel(batch.provider_batch_id)
                await self.store.update_llm_batch(batch.id, state="abandoned")
            except AppError as exc:
                log.warning("job.batch_cancel_failed", batch=batch.id, error=exc.message)
                continue
            log.info("job.batch_canceled", batch=batch.id, requests=batch.request_count)

    async def summarise(self, job_id: str, outcome: str, ctx: JobContext, seconds: float) -> None:
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
