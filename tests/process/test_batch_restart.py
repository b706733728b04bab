"""Batch mode across a deploy (SIGTERM) and a crash (SIGKILL) of the real service process while the
simulator holds the job's Message Batch in progress: the next process polls the same batch — the
simulator's ledger shows it created once — and the job completes with every chunk extracted and
none asked about twice (issue 10)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.process.backends import sqlite_rows
from tests.process.conftest import Services, wait_until
from tests.process.test_restarts import (
    USER_ID,
    _job,
    _post_job,
    _profile,
    _seed,
    _settings,
)
from tests.support.export_truth import ExportTruth, export_truth
from tests.support.messages_simulator import Simulator, SimulatorConfig, running_simulator

BATCH_SECONDS = 4.0


@pytest.fixture
def slow_batches() -> Iterator[Simulator]:
    config = SimulatorConfig(
        latency_s=0.02, seed=5, batch_processing_s=BATCH_SECONDS, batch_counts_advance=True
    )
    with running_simulator(config) as sim:
        yield sim


@pytest.fixture
def truth(small_export: Path) -> ExportTruth:
    return export_truth(small_export, user_id=USER_ID)


def _batch_settings(data_dir: Path, sim: Simulator) -> dict[str, Any]:
    return {**_settings(data_dir, sim), "llm_mode": "batch", "batch_poll_seconds": 0.2}


def _batches(db: Path, job_id: str) -> list[tuple[str, str, str | None]]:
    rows = sqlite_rows(
        db,
        "SELECT kind, state, provider_batch_id FROM llm_batches WHERE job_id = ?"
        " ORDER BY created_at",
        job_id,
    )
    return [(str(r[0]), str(r[1]), r[2]) for r in rows]


def _cached(db: Path) -> int:
    sql = "SELECT COUNT(*) FROM fact_extraction_cache WHERE user_id = ? AND content_hash NOT LIKE ?"
    return int(sqlite_rows(db, sql, USER_ID, "reduce:%")[0][0])


@pytest.mark.parametrize("stop", ["kill", "terminate"])
def test_a_restart_mid_batch_polls_the_same_batch_and_completes(
    tmp_path: Path,
    services: Services,
    slow_batches: Simulator,
    truth: ExportTruth,
    stop: str,
) -> None:
    data_dir = tmp_path / "data"
    db = data_dir / "soulprint.db"
    _seed(data_dir, truth.path)
    first = services.start("serve", **_batch_settings(data_dir, slow_batches))
    job_id = _post_job(first)
    wait_until(
        lambda: (
            ("extract", "in_progress") in {b[:2] for b in _batches(db, job_id)}
            and "requests done" in (_job(db, job_id)["note"] or "")
        ),
        timeout=30,
        what="a batch in progress, shown on the job",
        context=lambda: (_job(db, job_id), _batches(db, job_id), first.tail(5)),
    )
    note = _job(db, job_id)["note"]
    assert note.startswith("extract_facts: batch 1 of 1, ")
    [(_, _, provider_id)] = _batches(db, job_id)
    assert slow_batches.ledger()["batch"]["batches"] == 1
    assert _cached(db) == 0, "nothing can be read before the batch ends"

    getattr(first, stop)()
    assert _batches(db, job_id)[0][1] == "in_progress", "the batch stays on the job"

    second = services.start("serve", **_batch_settings(data_dir, slow_batches))
    wait_until(
        lambda: _job(db, job_id)["status"] == "complete",
        timeout=60,
        what="completion",
        context=lambda: (_job(db, job_id), _batches(db, job_id), second.tail(5)),
    )
    second.terminate()

    ledger = slow_batches.ledger()
    recorded = _batches(db, job_id)
    extract = [b for b in recorded if b[0] == "extract"]
    assert extract == [("extract", "read", provider_id)], "polled, never submitted again"
    assert ledger["batch"]["batches"] == len(recorded), "every batch created is on the job"
    assert ledger["by_task"].get("extract_facts", 0) == 0, "no extraction call in realtime"
    assert ledger["batch"]["by_task"]["extract_facts"] == ledger["batch"]["requests"] - (
        ledger["batch"]["by_task"].get("reduce_facts", 0)
    )
    assert ledger["excerpts_answered_more_than_once"] == 0
    assert ledger["excerpts"] == truth.units
    assert _cached(db) == truth.units, "every chunk extracted"
    assert _profile(db)["full_pass_status"] == "complete"
    assert _job(db, job_id)["note"] is None
