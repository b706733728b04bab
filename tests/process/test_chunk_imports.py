"""An import's chunks are all or nothing (issue 9, item 5), through real service processes and the
PostgREST stand-in over real PostgreSQL: a burst of 409s on `save_conversation_chunks` is absorbed
and the pass ends with exactly the chunker's rows; a pass that fails for good in the middle of the
save leaves the user's chunks exactly as the previous import left them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.process.backends import PostgresBackend
from tests.process.conftest import Services
from tests.process.operator import Operator, fault_settings
from tests.support.export_truth import export_truth
from tests.support.messages_simulator import Simulator
from tests.support.postgrest_server import PostgrestServer

USER_ID = "9c4a5b6d-7e8f-4a9b-8c1d-2e3f4a5b6c7d"
SAVE = "save_conversation_chunks"


def _chunks(backend: PostgresBackend) -> list[tuple[str, str | None, str | None]]:
    """(id, import_job_id, prior_import_job_id) of the user's rows, by id."""
    sql = (
        "SELECT id, import_job_id, prior_import_job_id FROM conversation_chunks"
        " WHERE user_id = ? ORDER BY id"
    )
    return [(str(i), None if j is None else str(j), p) for i, j, p in backend.rows(sql, USER_ID)]


def _store_export(backend: PostgresBackend, name: str, export: Path) -> str:
    path = f"imports/{USER_ID}/{name}"
    target = backend.storage_dir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(export, target)
    return path


def test_a_409_burst_on_the_chunk_save_ends_complete_with_exactly_the_chunks(
    services: Services,
    simulator: Simulator,
    exports: Any,
    postgres: tuple[str, PostgrestServer, Path],
) -> None:
    backend = PostgresBackend(*postgres)
    export = exports(0.3)
    truth = export_truth(export, user_id=USER_ID)
    backend.seed(USER_ID, f"imports/{USER_ID}/export.json", export)
    # The second batch meets three conflicts in a row (the client's conflict retries), then goes.
    backend.server.outage(tables=(SAVE,), status=409, after=1, count=3)
    settings = fault_settings(backend.settings(), simulator.base_url, chunk_batch_size=10)
    service = services.start("serve", **settings)
    job = Operator(service).finished(
        Operator(service).post(USER_ID, f"imports/{USER_ID}/export.json")
    )

    assert job["status"] == "complete", job["error"]
    assert job["attempts"] == 1
    assert backend.server.refused[SAVE] == 3
    rows = _chunks(backend)
    assert [r[0] for r in rows] == sorted(truth.chunk_ids)  # exactly the chunker's, once each
    assert {r[1] for r in rows} == {job["job_id"]}


def test_a_pass_that_fails_mid_save_leaves_the_previous_imports_chunks(
    services: Services,
    simulator: Simulator,
    exports: Any,
    postgres: tuple[str, PostgrestServer, Path],
) -> None:
    backend = PostgresBackend(*postgres)
    small, large = exports(0.15), exports(0.3)  # the small one's conversations come first
    backend.seed(USER_ID, f"imports/{USER_ID}/first.json", small)
    second_path = _store_export(backend, "second.json", large)
    settings = fault_settings(backend.settings(), simulator.base_url, chunk_batch_size=5)
    service = services.start("serve", **settings)
    operator = Operator(service)
    first = operator.finished(operator.post(USER_ID, f"imports/{USER_ID}/first.json"))
    assert first["status"] == "complete", first["error"]
    kept = _chunks(backend)
    assert [r[0] for r in kept] == sorted(export_truth(small, user_id=USER_ID).chunk_ids)

    # Eight calls of the second import go in (the first import's rows, re-tagged, and new
    # ones), then the save is refused for good: a 4xx that retrying cannot fix.
    backend.server.outage(tables=(SAVE,), status=400, after=8)
    second = operator.finished(operator.post(USER_ID, second_path))

    assert second["status"] == "failed"
    assert second["error"].startswith("save_chunks: PostgrestError: ")
    assert second["current_step"] == "save_chunks"
    assert operator.full_pass(USER_ID)["full_pass_error"] == second["error"]
    assert _chunks(backend) == kept  # the same ids, the same import, nothing re-tagged
    (rolled_back,) = service.events("job.chunks_rolled_back")
    assert rolled_back["removed"] > 0
    assert rolled_back["restored"] > 0
