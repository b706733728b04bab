"""A `soulprint.db` made before issue 11 opens with today's LocalStore: its processing_jobs
gains the new columns and accepts `canceled`, and its rows and indexes survive."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

import pytest

from app.adapters.local_schema_upgrade import upgrade_local_schema
from app.adapters.local_store import LocalStore
from app.domain import JobStatus, NewJob
from app.fleet import CancelOutcome

USER = "7d0f1d2e-3c4b-4a59-8e6f-1a2b3c4d5e6f"

# processing_jobs as the schema before issue 11 created it.
_OLD_JOBS = """
CREATE TABLE IF NOT EXISTS processing_jobs (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'complete', 'failed')),
    storage_path TEXT NOT NULL,
    pipeline_version TEXT NOT NULL DEFAULT 'v2',
    conversation_count INTEGER,
    message_count INTEGER,
    chunk_count INTEGER,
    current_step TEXT,
    progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    run_after TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at TEXT,
    heartbeat_at TEXT,
    export_sha256 TEXT,
    llm_provider TEXT,
    force INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    stats TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS processing_jobs_one_active_per_user
    ON processing_jobs (user_id) WHERE status IN ('queued', 'running');
INSERT INTO processing_jobs (id, user_id, status, storage_path, run_after, created_at, updated_at,
    error_message)
VALUES ('11111111-1111-4111-8111-111111111111', '7d0f1d2e-3c4b-4a59-8e6f-1a2b3c4d5e6f', 'failed',
    'imports/u/e.json', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00',
    '2026-01-01T00:00:00+00:00', 'extract_facts: X: y');
"""


@pytest.fixture
def old_data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "soulprint.db") as conn:
        conn.executescript(_OLD_JOBS)
    return data


async def test_an_old_file_is_caught_up_and_keeps_its_rows(old_data_dir: Path) -> None:
    store = LocalStore(old_data_dir)
    try:
        old = await store.get_job("11111111-1111-4111-8111-111111111111")
        assert old is not None
        assert (old.status, old.error_message, old.export_bytes) == (
            JobStatus.FAILED,
            "extract_facts: X: y",
            None,
        )
        job, _ = await store.enqueue_job(NewJob(user_id=USER, storage_path="imports/u/e.json"))
        await store.update_job(job.id, {"export_bytes": 1234})
        assert (await store.enqueue_job(NewJob(user_id=USER, storage_path="x")))[0].id == job.id
        canceled, outcome = await store.cancel_job(job.id, message="canceled: test")
        assert (canceled.status, outcome) == (JobStatus.CANCELED, CancelOutcome.CANCELED)
        assert canceled.export_bytes == 1234
        await store.append_job_event(
            job_id=job.id, user_id=USER, kind="canceled", attempt=0, worker_id="op"
        )
        assert [e.kind for e in await store.list_job_events(job.id)] == ["canceled"]
    finally:
        await store.aclose()


def test_the_upgrade_says_what_it_did_and_then_has_nothing_to_do(old_data_dir: Path) -> None:
    schema = resources.files("app.adapters").joinpath("local_schema.sql").read_text()
    with sqlite3.connect(old_data_dir / "soulprint.db", isolation_level=None) as conn:
        assert upgrade_local_schema(conn, schema) == ["rebuilt processing_jobs"]
        conn.executescript(schema)
        assert upgrade_local_schema(conn, schema) == []
        conn.execute("ALTER TABLE processing_jobs DROP COLUMN export_bytes")
        assert upgrade_local_schema(conn, schema) == ["added processing_jobs.export_bytes"]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "processing_jobs_one_active_per_user" in indexes
