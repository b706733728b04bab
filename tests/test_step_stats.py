"""Stuck detection's numbers: thresholds learned from history, the units of a step, and the
queue wait the runner observes at claim."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain import Job, JobStatus
from app.metrics import METRICS, REGISTRY
from app.processors.context import JobContext
from app.step_stats import build_thresholds, work_units

MB = 1024 * 1024


def _job(**fields: object) -> Job:
    values: dict[str, object] = {
        "id": "j",
        "user_id": "u",
        "status": JobStatus.RUNNING,
        "storage_path": "imports/u/e",
        "pipeline_version": "v2",
        "attempts": 1,
        "max_attempts": 3,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return Job(**{**values, **fields})  # type: ignore[arg-type]


def test_a_step_with_enough_history_uses_its_p99_per_unit() -> None:
    # 100 extractions: 99 at 1 s per chunk, one at 5 s per chunk (the p99), 10 chunks each.
    samples = {"extract_facts": [(10_000.0, 10.0)] * 99 + [(50_000.0, 10.0)]}
    t = build_thresholds(samples, factor=3.0, floor_seconds=600, min_samples=20)
    step = t.steps["extract_facts"]
    assert (step.learned, step.samples, step.unit) == (True, 100, "chunk")
    assert (step.p50_per_unit, step.p99_per_unit) == (1.0, 1.0)
    assert t.seconds("extract_facts", 1_000) == pytest.approx(3.0 * 1.0 * 1_000)
    assert t.seconds("extract_facts", 10) == 600  # the floor
    assert t.seconds("extract_facts") == 600  # p99 of whole durations: 10 s x 3 < floor
    samples["extract_facts"] = [(10_000.0, 10.0)] * 90 + [(50_000.0, 10.0)] * 10
    t = build_thresholds(samples, factor=3.0, floor_seconds=600, min_samples=20)
    assert t.steps["extract_facts"].p99_per_unit == 5.0
    assert t.seconds("extract_facts", 1_000) == pytest.approx(15_000)
    assert t.is_stuck("extract_facts", elapsed_seconds=15_001, units=1_000)
    assert not t.is_stuck("extract_facts", elapsed_seconds=14_999, units=1_000)


def test_too_little_history_falls_back_to_built_in_figures() -> None:
    samples = {"generate_memory": [(1_000.0, None)] * 19}
    t = build_thresholds(samples, factor=3.0, floor_seconds=60, min_samples=20)
    memory = t.steps["generate_memory"]
    assert (memory.learned, memory.samples, memory.p50_per_unit) == (False, 19, 1.0)
    assert t.seconds("generate_memory") == 3.0 * 300  # the default, not the 1 s seen so far
    assert t.seconds("not_a_step") == 60


def test_work_units_come_from_the_row_or_its_hints() -> None:
    assert work_units("download_conversations", _job(export_bytes=512 * MB)) == 512
    assert work_units("download_conversations", _job(message_count=7_000)) == pytest.approx(
        7_000 * 1_500 / MB
    )
    assert work_units("download_conversations", _job()) == 1.0
    assert work_units("extract_facts", _job(chunk_count=4_321, export_bytes=MB)) == 4_321
    assert work_units("extract_facts", _job(export_bytes=60 * MB)) == pytest.approx(60 * MB / 6000)
    assert work_units("generate_memory", _job(chunk_count=9)) == 1.0


def test_a_running_step_s_units_use_what_the_download_measured_since_the_claim() -> None:
    """A job enqueued without hints is read at the claim with no size: extraction of a 100 MB
    export, running while parsing still counts its chunks, was judged as one chunk of work (a
    10-minute floor: a healthy tier-1 pass flagged stuck)."""
    ctx = JobContext(job=_job(), store=None, llm=None, settings=None)  # type: ignore[arg-type]
    assert ctx.units("extract_facts") == 1.0
    ctx.count("download_conversations", bytes=100 * MB)
    assert ctx.units("download_conversations") == 100
    assert ctx.units("extract_facts") == pytest.approx(100 * MB / 6000)
    ctx.count("chunk_conversations", chunks=8_288)
    assert ctx.units("extract_facts") == 8_288
    assert ctx.units("generate_memory") == 1.0


def test_queue_wait_is_observed_from_due_to_claim_by_size() -> None:
    due = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    before = REGISTRY.get_sample_value("soulprint_queue_wait_seconds_sum", {"size": "large"}) or 0
    seconds = METRICS.observe_queue_wait(
        _job(run_after=due, export_bytes=1024 * MB), claimed_at=due + timedelta(seconds=90)
    )
    assert seconds == 90
    after = REGISTRY.get_sample_value("soulprint_queue_wait_seconds_sum", {"size": "large"})
    assert after == before + 90
