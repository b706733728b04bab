"""The status and alert contract (DESIGN §3, issue 5) under each kind of failure, end to end
through a real service process: a bad export, a rejected LLM key, a store outage (brief, and
persistent), and a job that runs past its time limit. A job that fails for good says
`"<step>: <ErrorType>: <message>"` in the profile and the job row, and the webhook gets a
`{"text": ...}` naming user, job, step and error, without any conversation content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.process.backends import LocalBackend, PostgresBackend
from tests.process.conftest import (
    API_KEY,
    FAST_JOBS,
    SIM_KEY,
    Services,
    wait_until,
)
from tests.support.messages_simulator import Simulator, SimulatorConfig, running_simulator
from tests.support.postgrest_server import PostgrestServer
from tests.support.service_process import ServiceProcess
from tests.support.webhook_receiver import WebhookReceiver

USER_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
STORAGE_PATH = f"imports/{USER_ID}/export.json"
Backend = LocalBackend | PostgresBackend


def _settings(backend: Backend, base_url: str, hooks: WebhookReceiver, **extra: Any) -> Any:
    return {
        **FAST_JOBS,
        **backend.settings(),
        "rlm_api_key": API_KEY,
        "anthropic_api_key": SIM_KEY,
        "anthropic_base_url": base_url,
        "alert_webhook": hooks.url,
        **extra,
    }


def _job(backend: Backend, job_id: str) -> dict[str, Any]:
    columns = ("status", "current_step", "attempts", "error_message", "lease_owner")
    sql = f"SELECT {', '.join(columns)} FROM processing_jobs WHERE id = ?"  # noqa: S608
    return dict(zip(columns, backend.rows(sql, job_id)[0], strict=True))


def _profile(backend: Backend) -> dict[str, Any]:
    sql = "SELECT full_pass_status, full_pass_error FROM user_profiles WHERE user_id = ?"
    status, error = backend.rows(sql, USER_ID)[0]
    return {"full_pass_status": status, "full_pass_error": error}


def _finished(backend: Backend, job_id: str, worker: ServiceProcess) -> dict[str, Any]:
    job: dict[str, Any] = wait_until(
        lambda: (j := _job(backend, job_id))["status"] in ("complete", "failed") and j,
        timeout=60,
        what="the job to end",
        context=lambda: (_job(backend, job_id), worker.tail(5)),
    )
    return job


def _assert_failed_for_good(
    backend: Backend,
    job_id: str,
    job: dict[str, Any],
    hooks: WebhookReceiver,
    *,
    prefix: str,
    attempts: int,
    export: Path,
) -> str:
    message: str = job["error_message"]
    assert job["status"] == "failed"
    assert job["attempts"] == attempts
    assert job["lease_owner"] is None
    assert message.startswith(prefix), message
    assert len(message) <= 500
    assert _profile(backend) == {"full_pass_status": "failed", "full_pass_error": message}
    alerts = wait_until(lambda: hooks.bodies, timeout=10, what="the alert")
    assert len(alerts) == 1
    assert set(alerts[0]) == {"text"}
    text = alerts[0]["text"]
    step = prefix.split(":")[0]
    for needed in (USER_ID, job_id, f"step: {step}", message):
        assert needed in text
    # No conversation content: no title and no message text of the export reaches the alert.
    raw = export.read_text(errors="replace")
    for marker in ('"title": "', '"parts": ["'):
        for piece in raw.split(marker)[1:40]:
            snippet = piece[:30]
            if len(snippet) >= 12:
                assert snippet not in text
    return message


def test_bad_export_fails_at_once_with_an_alert(
    tmp_path: Path, services: Services, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    backend = LocalBackend(tmp_path / "data")
    export = tmp_path / "upload.json"
    export.write_text('<html><body>502 Bad Gateway</body></html>{"title": "Dear diary, secret"}')
    backend.seed(USER_ID, STORAGE_PATH, export)
    worker = services.start("worker", **_settings(backend, simulator.base_url, receiver))
    job_id = backend.enqueue(USER_ID, STORAGE_PATH)
    job = _finished(backend, job_id, worker)
    _assert_failed_for_good(
        backend,
        job_id,
        job,
        receiver,
        prefix="chunk_conversations: BadExport: ",
        attempts=1,
        export=export,
    )
    assert "Dear diary" not in receiver.bodies[0]["text"]
    assert simulator.ledger()["requests"] == 0


def test_rejected_llm_key_stops_at_the_first_call(
    tmp_path: Path, services: Services, receiver: WebhookReceiver, small_export: Path
) -> None:
    backend = LocalBackend(tmp_path / "data")
    backend.seed(USER_ID, STORAGE_PATH, small_export)
    config = SimulatorConfig(latency_s=0.05, valid_keys=frozenset({"sk-the-right-key"}))
    with running_simulator(config) as sim:
        worker = services.start("worker", **_settings(backend, sim.base_url, receiver))
        job_id = backend.enqueue(USER_ID, STORAGE_PATH)
        job = _finished(backend, job_id, worker)
        ledger = sim.ledger()
    _assert_failed_for_good(
        backend,
        job_id,
        job,
        receiver,
        prefix="extract_facts: LLMFatal: ",
        attempts=1,
        export=small_export,
    )
    # Stopped at the first refusal: at most the calls already in flight were refused too.
    refused = ledger["by_outcome"].get("authentication_error", 0)
    assert 1 <= refused <= int(FAST_JOBS["fact_extraction_concurrency"])
    assert ledger["by_outcome"].get("ok", 0) == 0
    assert SIM_KEY not in receiver.bodies[0]["text"]


def test_brief_store_outage_is_retried_and_the_job_completes(
    services: Services,
    simulator: Simulator,
    receiver: WebhookReceiver,
    small_export: Path,
    postgres: tuple[str, PostgrestServer, Path],
) -> None:
    backend = PostgresBackend(*postgres)
    backend.seed(USER_ID, STORAGE_PATH, small_export)
    worker = services.start("worker", **_settings(backend, simulator.base_url, receiver))
    job_id = backend.enqueue(USER_ID, STORAGE_PATH)
    # Extraction under way: results in the cache (current_step can lag, see the issue-5 report).
    cached = "SELECT COUNT(*) FROM fact_extraction_cache WHERE user_id = ?"
    wait_until(
        lambda: backend.rows(cached, USER_ID)[0][0] > 0,
        timeout=30,
        what="extraction",
        context=lambda: (_job(backend, job_id), worker.tail(3)),
    )
    backend.server.outage(seconds=1.5)
    job = _finished(backend, job_id, worker)
    assert job["status"] == "complete", job
    assert job["attempts"] == 1
    assert _profile(backend) == {"full_pass_status": "complete", "full_pass_error": None}
    assert sum(backend.server.refused.values()) > 0
    assert worker.events("supabase.retry")
    assert receiver.bodies == []


def test_persistent_store_outage_fails_naming_the_table(
    services: Services,
    simulator: Simulator,
    receiver: WebhookReceiver,
    small_export: Path,
    postgres: tuple[str, PostgrestServer, Path],
) -> None:
    backend = PostgresBackend(*postgres)
    backend.seed(USER_ID, STORAGE_PATH, small_export)
    backend.server.outage(tables=("save_conversation_chunks",))
    settings = _settings(
        backend, simulator.base_url, receiver, max_attempts=2, supabase_max_retries=1
    )
    worker = services.start("worker", **settings)
    job_id = backend.enqueue(USER_ID, STORAGE_PATH, max_attempts=2)
    job = _finished(backend, job_id, worker)
    message = _assert_failed_for_good(
        backend,
        job_id,
        job,
        receiver,
        prefix="save_chunks: StoreUnavailable: ",
        attempts=2,
        export=small_export,
    )
    assert "conversation_chunks" in message
    assert len(worker.events("job.retry_scheduled")) == 1


def test_a_job_that_stops_moving_fails_as_stalled_naming_the_step(
    tmp_path: Path, services: Services, receiver: WebhookReceiver, small_export: Path
) -> None:
    backend = LocalBackend(tmp_path / "data")
    backend.seed(USER_ID, STORAGE_PATH, small_export)
    # Every call hangs far past the stall limit: nothing moves.
    with running_simulator(SimulatorConfig(latency_s=30)) as sim:
        settings = _settings(backend, sim.base_url, receiver, job_stall_seconds=1.5)
        worker = services.start("worker", **settings)
        job_id = backend.enqueue(USER_ID, STORAGE_PATH, max_attempts=1)
        job = _finished(backend, job_id, worker)
    message = _assert_failed_for_good(
        backend,
        job_id,
        job,
        receiver,
        prefix="extract_facts: JobStalled: ",
        attempts=1,
        export=small_export,
    )
    assert "stalled in extract_facts: no progress for 0.025 min" in message
