"""Stuck detection's thresholds, learned from history (issue 11).

Every `step_completed` event carries `duration_ms` and `units` — the step's work in its unit:
megabytes of export for the download, chunks for the three overlapping ingest steps (parsing is
held back by extraction, so all three move at the pace of chunks), one for the rest. From the
latest samples of each step, the threshold for a running step is

    max(STUCK_FLOOR_SECONDS, STUCK_THRESHOLD_FACTOR × p99(seconds per unit) × units)

While a step has fewer than STUCK_MIN_SAMPLES samples, a built-in per-unit figure stands in for
the p99 (generous: a false "stuck" costs an operator's attention). `python -m app stats steps`
prints the table; the runner calls `StepThresholds.seconds(step, units)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from app.config import Settings
from app.domain import STEPS, Job
from app.ports import OperatorStore
from app.queue_order import MB, estimated_bytes

__all__ = [
    "UNIT_OF_STEP",
    "StepThreshold",
    "StepThresholds",
    "build_thresholds",
    "load_step_thresholds",
    "work_units",
]

Unit = Literal["mb", "chunk", "job"]
UNIT_OF_STEP: dict[str, Unit] = {
    "download_conversations": "mb",
    "chunk_conversations": "chunk",
    "save_chunks": "chunk",
    "extract_facts": "chunk",
}
# Seconds per unit standing in for p99 until a step has enough history.
_DEFAULT_PER_UNIT: dict[str, float] = {
    "download_conversations": 2.0,
    "chunk_conversations": 3.0,
    "save_chunks": 3.0,
    "extract_facts": 3.0,
    "consolidate_facts": 120.0,
    "hierarchical_reduce": 600.0,
    "generate_memory": 300.0,
    "save_memory": 30.0,
    "v2_regeneration": 600.0,
    "complete": 60.0,
}
_BYTES_PER_CHUNK = 6_000  # ~1,500 tokens of text; export JSON carries more, so this overcounts


def work_units(step: str, job: Job, *, export_bytes: int | None = None) -> float:
    """The units of work `step` has on `job`, from what the row knows so far (the measured
    size — `export_bytes` when the caller measured it since the row was read — else the
    request's hints; the chunk count, else an estimate from the size)."""
    unit = UNIT_OF_STEP.get(step, "job")
    if unit == "job":
        return 1.0
    measured = export_bytes if export_bytes is not None else job.export_bytes
    size = estimated_bytes(measured, job.message_count, job.conversation_count)
    if unit == "mb":
        return max(1.0, size / MB)
    return max(1.0, float(job.chunk_count or size / _BYTES_PER_CHUNK))


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class StepThreshold:
    step: str
    unit: Unit
    samples: int
    learned: bool  # False: too little history, the built-in per-unit figure is used
    p50_per_unit: float | None
    p99_per_unit: float
    p99_seconds: float | None


@dataclass(frozen=True, slots=True)
class StepThresholds:
    steps: Mapping[str, StepThreshold]
    factor: float
    floor_seconds: float

    def seconds(self, step: str, units: float | None = None) -> float:
        """How long `step` may run on `units` of work before the job counts as stuck. Without
        `units`, the step's p99 duration (when learned) stands for a typical job."""
        known = self.steps.get(step)
        if known is None:
            return self.floor_seconds
        if units is None and known.learned and known.p99_seconds is not None:
            base = known.p99_seconds
        else:
            base = known.p99_per_unit * max(1.0, units or 1.0)
        return max(self.floor_seconds, self.factor * base)

    def is_stuck(self, step: str, *, elapsed_seconds: float, units: float | None = None) -> bool:
        return elapsed_seconds > self.seconds(step, units)


def build_thresholds(
    samples: Mapping[str, Sequence[tuple[float, float | None]]],
    *,
    factor: float,
    floor_seconds: float,
    min_samples: int,
) -> StepThresholds:
    """Thresholds from `(duration_ms, units)` samples per step (`Store.step_duration_samples`)."""
    steps: dict[str, StepThreshold] = {}
    for step in STEPS:
        rows = samples.get(step) or []
        per_unit = [ms / 1000 / max(1.0, units or 1.0) for ms, units in rows]
        learned = len(rows) >= min_samples
        steps[step] = StepThreshold(
            step=step,
            unit=UNIT_OF_STEP.get(step, "job"),
            samples=len(rows),
            learned=learned,
            p50_per_unit=_percentile(per_unit, 0.5) if per_unit else None,
            p99_per_unit=_percentile(per_unit, 0.99) if learned else _DEFAULT_PER_UNIT[step],
            p99_seconds=_percentile([ms / 1000 for ms, _ in rows], 0.99) if learned else None,
        )
    return StepThresholds(steps=steps, factor=factor, floor_seconds=floor_seconds)


async def load_step_thresholds(
    store: OperatorStore, settings: Settings, *, per_step: int = 500
) -> StepThresholds:
    """The thresholds from the store's latest `per_step` completed samples of each step."""
    samples = await store.step_duration_samples(STEPS, per_step=per_step)
    return build_thresholds(
        samples,
        factor=settings.stuck_threshold_factor,
        floor_seconds=settings.stuck_floor_seconds,
        min_samples=settings.stuck_min_samples,
    )
