"""The runner's pen for the audit trail (issue 11): one row per moment of a job's life.

    events = JobEvents(store, worker_id)
    await events.record(job, EventKind.CLAIMED)
    await events.step_completed(job, "extract_facts", duration_ms=ms, counts=ctx.counts[step])

`record` never raises: a trail that cannot be written is logged and counted
(`soulprint_job_events_total{outcome="failed"}`), never a reason to fail a job. Details are for
operators: counts, durations, ids, error messages written for people (DESIGN §3). Never
conversation text, prompts or keys — strings are cut at 300 characters as a last guard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from app.domain import Job
from app.fleet import EventKind
from app.metrics import METRICS, Metrics
from app.ports import OperatorStore
from app.step_stats import work_units

__all__ = ["EventKind", "JobEvents"]

log = structlog.get_logger(__name__)

_MAX_STRING = 300
_MAX_ITEMS = 50


def _clean(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, bounded copy: scalars as they are, strings cut, containers capped."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= _MAX_STRING else value[: _MAX_STRING - 1] + "…"
    if depth < 3 and isinstance(value, Mapping):
        items = list(value.items())[:_MAX_ITEMS]
        return {str(k): _clean(v, depth + 1) for k, v in items}
    if depth < 3 and isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value[:_MAX_ITEMS]]
    return type(value).__name__


class JobEvents:
    """Writes events as `worker_id` (a runner's id, or `operator:api` / `operator:cli:<host>`)."""

    def __init__(self, store: OperatorStore, worker_id: str, *, metrics: Metrics = METRICS) -> None:
        self._store = store
        self.worker_id = worker_id
        self._metrics = metrics

    async def record(
        self, job: Job, kind: EventKind | str, *, step: str | None = None, **detail: Any
    ) -> bool:
        """Append one event for `job` at its current attempt; True if it was written."""
        kind = str(kind)
        if kind == EventKind.STUCK:
            self._metrics.jobs_stuck.labels(step=step or "unknown").inc()
        try:
            await self._store.append_job_event(
                job_id=job.id,
                user_id=job.user_id,
                kind=kind,
                attempt=job.attempts,
                worker_id=self.worker_id,
                step=step,
                detail=_clean(detail),
            )
        except Exception as exc:  # the trail must never fail the job
            self._metrics.job_events.labels(kind=kind, outcome="failed").inc()
            log.warning(
                "job_event.write_failed",
                job_id=job.id,
                kind=kind,
                step=step,
                error_type=type(exc).__name__,
            )
            return False
        self._metrics.job_events.labels(kind=kind, outcome="written").inc()
        return True

    async def step_completed(
        self,
        job: Job,
        step: str,
        *,
        duration_ms: int,
        counts: Mapping[str, Any] | None = None,
        units: float | None = None,
    ) -> bool:
        """`step_completed` with what stuck detection learns from: `duration_ms` and `units`
        (computed from the job row when not given: pass a fresh row, or the units you know)."""
        known_units = units if units is not None else work_units(step, job)
        detail = {k: v for k, v in (counts or {}).items() if k != "step"}
        detail |= {"duration_ms": duration_ms, "units": round(known_units, 3)}
        return await self.record(job, EventKind.STEP_COMPLETED, step=step, **detail)
