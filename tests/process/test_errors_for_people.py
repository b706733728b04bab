"""Errors for people (issue 9, item 6), as an operator reads them over the API of a real service
process: the failing step and `current_step` agree even when the steps overlap; a job back in the
queue shows no step, progress 0 and why it waits; an unexpected exception reads as what to do,
its type kept in the logs (tests/test_jobs.py: no unexpected error is reachable through the process
boundary any more); a job row that does not read does not stop the runner.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.process.backends import LocalBackend, PostgresBackend
from tests.process.conftest import Services
from tests.process.operator import Operator, fault_settings
from tests.support.messages_simulator import Simulator
from tests.support.postgrest_server import PostgrestServer

USER_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
OTHER_ID = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"
STORAGE_PATH = f"imports/{USER_ID}/export.json"


def _write(db: Path, sql: str, *params: Any) -> None:
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def test_a_bad_export_failing_while_later_steps_run_names_its_own_step(
    tmp_path: Path, services: Services, simulator: Simulator, small_export: Path
) -> None:
    backend = LocalBackend(tmp_path / "data")
    cut = tmp_path / "cut.json"
    raw = small_export.read_bytes()
    cut.write_bytes(raw[: len(raw) * 7 // 10])  # conversations first, then the end is gone
    backend.seed(USER_ID, STORAGE_PATH, cut)
    service = services.start("serve", **fault_settings(backend.settings(), simulator.base_url))
    operator = Operator(service)
    job = operator.finished(operator.post(USER_ID, STORAGE_PATH))

    assert job["status"] == "failed"
    assert job["error"].startswith("chunk_conversations: BadExport: ")
    assert job["current_step"] == "chunk_conversations"  # not the step the row had moved on to
    names = [(e["event"], e.get("step")) for e in service.events()]
    # Parse, save and extraction run together: extraction had begun when the parse failed.
    assert names.index(("step.started", "extract_facts")) < names.index(
        ("step.failed", "chunk_conversations")
    )
    assert operator.full_pass(USER_ID)["full_pass_error"] == job["error"]
    # The import never became whole: the rows it had saved are gone again.
    assert backend.rows("SELECT COUNT(*) FROM conversation_chunks") == [(0,)]


def test_a_job_queued_to_retry_shows_no_step_and_why_it_waits(
    services: Services,
    simulator: Simulator,
    exports: Any,
    postgres: tuple[str, PostgrestServer, Path],
) -> None:
    backend = PostgresBackend(*postgres)
    backend.seed(USER_ID, STORAGE_PATH, exports(0.15))
    backend.server.outage(tables=("save_conversation_chunks",))  # 503s until ended
    settings = fault_settings(
        backend.settings(), simulator.base_url, supabase_max_retries=0, retry_backoff_seconds=2
    )
    operator = Operator(services.start("serve", **settings))
    job_id = operator.post(USER_ID, STORAGE_PATH)
    queued = operator.wait_job(
        job_id,
        lambda j: j["status"] == "queued" and j["attempts"] == 1,
        timeout=20,
        what="the job back in the queue",
    )
    backend.server.end_outage()

    assert queued["current_step"] is None
    assert queued["progress"] == 0
    assert queued["note"].startswith("queued to retry (attempt 2 of 3) at ")
    assert queued["note"].endswith(" UTC, after save_chunks failed")
    assert queued["error"].startswith("save_chunks: StoreUnavailable: ")
    assert operator.full_pass(USER_ID)["full_pass_status"] == "processing"  # not a failure
    job = operator.finished(job_id, timeout=30)
    assert job["status"] == "complete", job["error"]
    assert job["attempts"] == 2
    assert job["note"] is None  # the retry's note went when the retry ran
    assert job["error"] is None


def test_counts_that_do_not_read_are_no_reason_to_fail_a_reimport(
    tmp_path: Path, services: Services, simulator: Simulator, exports: Any
) -> None:
    """An earlier job's counts that are not an object (a row written by hand, an older version)
    used to fail every unforced re-import with an InternalError: the export is processed again."""
    backend = LocalBackend(tmp_path / "data")
    backend.seed(USER_ID, STORAGE_PATH, exports(0.15))
    settings = fault_settings(backend.settings(), simulator.base_url, max_attempts=1)
    service = services.start("serve", **settings)
    operator = Operator(service)
    first = operator.finished(operator.post(USER_ID, STORAGE_PATH))
    assert first["status"] == "complete", first["error"]
    _write(
        backend.db,
        "UPDATE processing_jobs SET stats = ? WHERE id = ?",
        '{"counts": 1}',
        first["job_id"],
    )
    job = operator.finished(operator.post(USER_ID, STORAGE_PATH))

    assert job["status"] == "complete", job["error"]
    assert "unchanged_export_of" not in job["stats"]["counts"].get("complete", {})
    assert not service.events("job.unexpected_error")


def test_a_job_row_that_does_not_read_does_not_stop_the_runner(
    tmp_path: Path, services: Services, simulator: Simulator, exports: Any
) -> None:
    backend = LocalBackend(tmp_path / "data")
    export = exports(0.15)
    other_path = f"imports/{OTHER_ID}/export.json"
    backend.seed(USER_ID, STORAGE_PATH, export)
    backend.seed(OTHER_ID, other_path, export)
    broken = backend.enqueue(USER_ID, STORAGE_PATH)
    _write(backend.db, "UPDATE processing_jobs SET stats = ? WHERE id = ?", "{not json", broken)
    settings = fault_settings(backend.settings(), simulator.base_url)
    operator = Operator(services.start("serve", **settings))
    other = operator.post(OTHER_ID, other_path)

    jobs = [operator.finished(job_id, timeout=30) for job_id in (broken, other)]
    assert [j["status"] for j in jobs] == ["complete", "complete"], jobs
