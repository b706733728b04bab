"""What a running pipeline is given: the ports, the settings, the job, and step bookkeeping.

`JobContext.step(name)` is the one way a stage announces itself: it binds `step` to every log line,
logs `step.started` / `step.completed` / `step.failed` with `duration_ms`, and records the step on
the job row so operators can see where a job is. `pulse()` marks progress (the runner's stall
watchdog reads it); `checkpoints` survive on the job row, so a resumed attempt skips what an
earlier one already saved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

from app.alerts import Alerter
from app.config import Settings
from app.domain import PIPELINE_VERSION, STEPS, Job
from app.errors import AppError
from app.events import JobEvents
from app.fleet import EventKind
from app.metrics import METRICS
from app.ports import LLM, Store
from app.processors.ledger import CostLedger
from app.queue_order import MB
from app.step_stats import UNIT_OF_STEP, work_units

__all__ = ["JobContext", "NeedsLargeSlot", "Pipeline", "StepFailed"]

log = structlog.get_logger(__name__)

Pipeline = Callable[[Job, "JobContext"], Awaitable[None]]

# Coarse progress at the start of each step; extraction moves it between 35 and 80.
_STEP_PROGRESS = {
    "download_conversations": 2,
    "chunk_conversations": 5,
    "save_chunks": 10,
    "extract_facts": 35,
    "consolidate_facts": 80,
    "hierarchical_reduce": 83,
    "generate_memory": 86,
    "save_memory": 90,
    "v2_regeneration": 92,
    "complete": 98,
}


class StepFailed(Exception):
    """Carries the step a failure happened in to the runner, which writes the status."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"{step}: {type(error).__name__}: {error}")
        self.step = step
        self.error = error


class NeedsLargeSlot(Exception):
    """A job claimed into a small-import slot whose download measured a large export: the
    runner puts it back in the queue (no attempt counted) for a slot that takes any size."""

    def __init__(self, size_bytes: int) -> None:
        super().__init__(f"export of {size_bytes} bytes")
        self.megabytes = size_bytes / MB


@dataclass
class JobContext:
    job: Job
    store: Store
    llm: LLM
    settings: Settings
    # Alerts people must act on that do not fail the job (v2 skipped for no credit).
    alerter: Alerter | None = None
    # The audit trail (app/events.py): step started / completed / failed, as they happen.
    events: JobEvents | None = None
    # Claimed in a slot kept for small imports: a big export found at download goes back.
    small_slot: bool = False
    # Set by the pipeline: what its LLM calls cost, reported with every step.
    ledger: CostLedger | None = None
    durations_ms: dict[str, int] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    current_step: str | None = None
    # Work an earlier attempt saved (chunks committed, MEMORY saved for a given input): kept in
    # the job row's stats, so a resumed attempt does not pay for it again.
    checkpoints: dict[str, Any] = field(default_factory=dict)
    _clock: Callable[[], float] = time.monotonic
    last_progress: float = field(default_factory=time.monotonic)
    # When the latest step began, and how long it waited for the provider since: stuck
    # detection measures a step's own time.
    step_started_at: float = field(default_factory=time.monotonic)
    step_waited_s: float = 0.0
    # Steps overlap (parse, save and extract run together); their job-row writes must still land
    # in the order the steps began, or `current_step` could say save_chunks all through
    # extraction. asyncio.Lock is first-come first-served.
    _row_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        saved = self.job.stats.get("checkpoints")
        if isinstance(saved, dict) and not self.checkpoints:
            self.checkpoints = dict(saved)

    def pulse(self) -> None:
        """The job moved forward (a chunk parsed, saved or extracted, a step begun or ended).

        Plain assignment of a float: safe to call from the parser's thread too."""
        self.last_progress = self._clock()

    def idle_seconds(self) -> float:
        return self._clock() - self.last_progress

    async def record(self, fields: dict[str, Any]) -> None:
        """Write progress columns on the job row, in order with every other such write."""
        async with self._row_lock:
            await self.store.update_job(self.job.id, fields)

    @asynccontextmanager
    async def step(self, name: str, **fields: Any) -> AsyncIterator[None]:
        if name not in STEPS:
            raise ValueError(f"unknown step {name!r}")
        self.current_step = name
        self.pulse()
        started = self.step_started_at = self._clock()
        self.step_waited_s = 0.0
        with structlog.contextvars.bound_contextvars(step=name):
            log.info("step.started", **fields)
            await self.record({"current_step": name, "progress": _STEP_PROGRESS[name]})
            if self.events is not None:
                await self.events.record(self.job, EventKind.STEP_STARTED, step=name)
            try:
                yield
            except StepFailed:
                raise
            except Exception as exc:
                duration = int((self._clock() - started) * 1000)
                log.warning("step.failed", error_type=type(exc).__name__, duration_ms=duration)
                if self.events is not None:
                    await self.events.record(
                        self.job,
                        EventKind.STEP_FAILED,
                        step=name,
                        error_type=type(exc).__name__,
                        error=exc.message if isinstance(exc, AppError) else None,
                        duration_ms=duration,
                    )
                raise StepFailed(name, exc) from exc
            self.pulse()
            elapsed = self._clock() - started
            METRICS.step_seconds.labels(step=name).observe(elapsed)
            duration = int(elapsed * 1000)
            self.durations_ms[name] = self.durations_ms.get(name, 0) + duration
            log.info("step.completed", duration_ms=duration, **self.counts.get(name, {}))
            if self.events is not None:
                await self.events.step_completed(
                    self.job,
                    name,
                    duration_ms=duration,
                    counts=self.counts.get(name),
                    units=self.units(name),
                )
            await self.record_stats()

    async def record_stats(self) -> None:
        """The job row's telemetry so far: per-step durations and counts, tokens and cost, and
        the checkpoints a resumed attempt relies on.

        Written at every step boundary, so `GET /jobs/{id}` tells a running job's story too.
        A failed write is logged, never raised: telemetry must not fail the job.
        """
        fields: dict[str, Any] = {
            "stats": {
                "pipeline_version": PIPELINE_VERSION,
                "durations_ms": self.durations_ms,
                "counts": self.counts,
                "checkpoints": self.checkpoints,
                **({"llm": self.ledger.to_json()} if self.ledger else {}),
            }
        }
        if self.ledger is not None:
            total = self.ledger.totals()
            fields["input_tokens"] = (
                total.input_tokens
                + total.cache_read_input_tokens
                + total.cache_creation_input_tokens
            )
            fields["output_tokens"] = total.output_tokens
            fields["cost_usd"] = round(total.usd, 6)
        try:
            await self.record(fields)
        except Exception as exc:
            log.warning("job.stats_write_failed", error_type=type(exc).__name__)

    def units(self, step: str) -> float:
        """The work `step` has on this job, in its unit (app/step_stats.py): megabytes for the
        download, chunks for the ingest steps once parsing counted them, else one."""
        chunks = self.counts.get("chunk_conversations", {}).get("chunks")
        if UNIT_OF_STEP.get(step) == "chunk" and chunks:
            return max(1.0, float(chunks))
        # The row was read at the claim: the download has measured the export since.
        size = self.counts.get("download_conversations", {}).get("bytes")
        return work_units(step, self.job, export_bytes=size)

    def step_seconds(self) -> float:
        """How long the latest step has run on its own (time waiting for the provider out)."""
        return self._clock() - self.step_started_at - self.step_waited_s

    def count(self, step: str, **values: Any) -> None:
        """Counts reported on the step's completion line and kept for the job's stats."""
        self.counts.setdefault(step, {}).update(values)

    async def progress(self, percent: int) -> None:
        self.pulse()
        await self.record({"progress": max(0, min(99, percent))})

    async def set_note(self, note: str | None) -> None:
        """The job's note in words (None clears it); a failed write is logged, not raised."""
        try:
            await self.record({"note": note})
        except Exception as exc:
            log.warning("job.note_write_failed", error_type=type(exc).__name__)
