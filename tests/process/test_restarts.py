"""A deploy (SIGTERM) and a crash (SIGKILL) of the real service process, mid-extraction: the job
resumes in the next process and ends complete, with exactly the chunk rows the chunker makes and
only the in-flight extraction calls paid twice (DESIGN §2-§3, issue 5)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.adapters.local_store import LocalStore
from app.domain import JobStatus
from tests.process.backends import sqlite_rows
from tests.process.conftest import (
    API_KEY,
    CONCURRENCY,
    FAST_JOBS,
    SIM_KEY,
    Services,
    wait_until,
)
from tests.support.export_truth import ExportTruth, export_truth
from tests.support.messages_simulator import Simulator
from tests.support.service_process import ServiceProcess

USER_ID = "7d1e6c2a-0b9f-4f3e-8a61-3c5d2e4f6a71"
STORAGE_PATH = f"imports/{USER_ID}/export.json"


def _settings(data_dir: Path, sim: Simulator) -> dict[str, Any]:
    return {
        **FAST_JOBS,
        "local_data_dir": data_dir,
        "rlm_api_key": API_KEY,
        "anthropic_api_key": SIM_KEY,
        "anthropic_base_url": sim.base_url,
    }


def _post_job(service: ServiceProcess) -> str:
    response = httpx.post(
        f"{service.base_url}/process-full-v2",
        json={"user_id": USER_ID, "storage_path": STORAGE_PATH},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def _job(db: Path, job_id: str) -> dict[str, Any]:
    columns = ("status", "current_step", "attempts", "lease_owner", "error_message", "note")
    rows = sqlite_rows(db, f"SELECT {', '.join(columns)} FROM processing_jobs WHERE id = ?", job_id)  # noqa: S608
    return dict(zip(columns, rows[0], strict=True))


def _profile(db: Path) -> dict[str, Any]:
    columns = ("full_pass_status", "full_pass_error", "full_pass_completed_at", "memory_md")
    rows = sqlite_rows(
        db,
        f"SELECT {', '.join(columns)} FROM user_profiles WHERE user_id = ?",  # noqa: S608
        USER_ID,
    )
    return dict(zip(columns, rows[0], strict=True))


def _cached(db: Path) -> int:
    rows = sqlite_rows(db, "SELECT COUNT(*) FROM fact_extraction_cache WHERE user_id = ?", USER_ID)
    return int(rows[0][0])


def _seed(data_dir: Path, export: Path) -> None:
    async def seed() -> None:
        store = LocalStore(data_dir)
        try:
            await store.ensure_profile(USER_ID)
            store.put_export(STORAGE_PATH, export)
        finally:
            await store.aclose()

    asyncio.run(seed())


def _mid_extraction(db: Path, job_id: str) -> bool:
    return _job(db, job_id)["current_step"] == "extract_facts" and _cached(db) > 0


def _assert_exact_chunks(db: Path, truth: ExportTruth) -> None:
    ids = [
        r[0]
        for r in sqlite_rows(db, "SELECT id FROM conversation_chunks WHERE user_id = ?", USER_ID)
    ]
    assert len(ids) == len(set(ids)), "duplicate chunk rows"
    assert set(ids) == truth.chunk_ids, (
        f"{len(truth.chunk_ids - set(ids))} missing, {len(set(ids) - truth.chunk_ids)} unexpected"
    )
    positions = sqlite_rows(
        db,
        "SELECT conversation_id, chunk_index, COUNT(*) FROM conversation_chunks WHERE user_id = ?"
        " GROUP BY conversation_id, chunk_index HAVING COUNT(*) > 1",
        USER_ID,
    )
    assert positions == []


def _start_mid_extraction(
    data_dir: Path, services: Services, simulator: Simulator, truth: ExportTruth
) -> tuple[ServiceProcess, str]:
    """Seed the store, start the service, POST the job; return once results are being cached."""
    db = data_dir / "soulprint.db"
    _seed(data_dir, truth.path)
    first = services.start("serve", **_settings(data_dir, simulator))
    job_id = _post_job(first)
    wait_until(
        lambda: _mid_extraction(db, job_id),
        timeout=30,
        what="extraction with a cache",
        context=lambda: (_job(db, job_id), _cached(db), first.tail(5)),
    )
    return first, job_id


def _restart_to_completion(
    data_dir: Path, services: Services, simulator: Simulator, job_id: str
) -> ServiceProcess:
    """Start a new service on the same store and wait until it has completed the job."""
    db = data_dir / "soulprint.db"
    second = services.start("serve", **_settings(data_dir, simulator))
    wait_until(
        lambda: _job(db, job_id)["status"] == "complete",
        timeout=60,
        what="completion",
        context=lambda: (_job(db, job_id), second.tail(5)),
    )
    second.terminate()
    return second


@pytest.fixture
def truth(small_export: Path) -> ExportTruth:
    return export_truth(small_export, user_id=USER_ID)


def test_kill_9_mid_extraction_resumes_with_exact_chunks(
    tmp_path: Path, services: Services, simulator: Simulator, truth: ExportTruth
) -> None:
    data_dir = tmp_path / "data"
    db = data_dir / "soulprint.db"
    first, job_id = _start_mid_extraction(data_dir, services, simulator, truth)
    assert first.kill() == -9
    crashed = _job(db, job_id)
    cached_at_crash = _cached(db)
    excerpts_before = simulator.ledger()["excerpts"]
    # A crash releases nothing: the row still names the dead process until its lease expires.
    assert crashed["status"] == "running"
    assert crashed["lease_owner"] is not None

    second = _restart_to_completion(data_dir, services, simulator, job_id)

    done, profile = _job(db, job_id), _profile(db)
    assert done["attempts"] == 2  # the crashed attempt counts; it was not a clean release
    assert done["error_message"] is None
    assert profile["full_pass_status"] == "complete"
    assert profile["full_pass_error"] is None
    assert profile["memory_md"]
    _assert_exact_chunks(db, truth)
    assert _cached(db) == truth.units
    ledger = simulator.ledger()
    repeated = ledger["excerpts_answered_more_than_once"]
    assert ledger["excerpts"] - repeated == truth.units  # every chunk answered, at least once
    # Paid twice: what the dead process had asked about (answered, or in flight when it died)
    # minus what it had written to the cache.
    in_flight = CONCURRENCY * ledger["max_excerpts_per_request"]
    assert 0 <= repeated <= excerpts_before + in_flight - cached_at_crash
    # Results are cached inside their request's slot: only requests in flight are paid twice.
    assert repeated <= in_flight
    claims = second.events("job.claimed")
    assert [c["job_id"] for c in claims] == [job_id]


def test_sigterm_mid_extraction_releases_then_completes(
    tmp_path: Path, services: Services, simulator: Simulator, truth: ExportTruth
) -> None:
    data_dir = tmp_path / "data"
    db = data_dir / "soulprint.db"
    first, job_id = _start_mid_extraction(data_dir, services, simulator, truth)
    # uvicorn re-raises the SIGTERM it handled once the lifespan has ended cleanly.
    assert first.terminate() in (0, -15)
    assert first.events("service.stopped")
    released, profile = _job(db, job_id), _profile(db)
    assert released == {
        "status": JobStatus.QUEUED.value,
        "current_step": None,  # back in the queue: in no step; the note says why it waits
        "attempts": 0,  # a release on shutdown is not a failed attempt
        "lease_owner": None,
        "error_message": None,
        "note": "released at shutdown (a deploy or a restart); it resumes where it was",
    }
    assert profile["full_pass_status"] == "processing"
    assert profile["full_pass_error"] is None
    assert first.events("job.released")[0]["released"] is True
    assert not first.events("job.failed")
    stopped = simulator.ledger()
    in_flight = CONCURRENCY * stopped["max_excerpts_per_request"]
    # Everything finished before the shutdown reached the cache: nothing done is paid twice.
    assert _cached(db) >= stopped["excerpts"] - in_flight

    _restart_to_completion(data_dir, services, simulator, job_id)
    done = _job(db, job_id)
    assert done["attempts"] == 1
    assert _profile(db)["full_pass_status"] == "complete"
    _assert_exact_chunks(db, truth)
    ledger = simulator.ledger()
    assert ledger["excerpts"] - ledger["excerpts_answered_more_than_once"] == truth.units
    assert 0 <= ledger["excerpts_answered_more_than_once"] <= in_flight
