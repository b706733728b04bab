"""The operator endpoints as a client sees them: the trail, bulk retry, cancel, forget."""

from __future__ import annotations

import uuid

import httpx
import pytest

from app.adapters.local_store import LocalStore
from app.config import Settings
from app.main import create_app
from tests.conftest import auth, serve
from tests.support.seeding import seed_job


@pytest.fixture
async def client(settings: Settings, local_store: LocalStore) -> httpx.AsyncClient:
    app = create_app(settings, store=local_store, pipelines={})
    async with serve(app) as client:
        yield client  # type: ignore[misc]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/jobs/{uuid.uuid4()}/events"),
        ("POST", "/jobs/retry"),
        ("POST", f"/jobs/{uuid.uuid4()}/cancel"),
        ("DELETE", f"/users/{uuid.uuid4()}/data"),
    ],
)
async def test_operator_endpoints_need_the_key(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 401


async def test_the_trail_of_a_job(client: httpx.AsyncClient, local_store: LocalStore) -> None:
    job = await seed_job(local_store, run=True)
    await local_store.append_job_event(
        job_id=job.id, user_id=job.user_id, kind="claimed", attempt=1, worker_id="w"
    )
    response = await client.get(f"/jobs/{job.id}/events", headers=auth())
    assert response.status_code == 200
    body = response.json()
    assert body["job_id"] == job.id
    assert [(e["kind"], e["attempt"], e["worker_id"]) for e in body["events"]] == [
        ("claimed", 1, "w")
    ]
    missing = await client.get(f"/jobs/{uuid.uuid4()}/events", headers=auth())
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "job_not_found")


async def test_bulk_retry_dry_run_then_real(
    client: httpx.AsyncClient, local_store: LocalStore
) -> None:
    overloaded = await seed_job(local_store, fail="extract_facts: LLMUnavailable: overloaded")
    await seed_job(local_store, fail="download_conversations: ExportNotFound: gone")
    body = {"since": "1h", "step": "extract_facts"}
    plan = await client.post("/jobs/retry", json={**body, "dry_run": True}, headers=auth())
    assert plan.status_code == 200
    assert (plan.json()["matched"], plan.json()["queued"]) == (1, 1)
    assert plan.json()["jobs"][0]["outcome"] == "would_queue"
    done = await client.post("/jobs/retry", json=body, headers=auth())
    assert (done.json()["queued"], done.json()["jobs"][0]["job_id"]) == (1, overloaded.id)
    job = (await client.get(f"/jobs/{overloaded.id}", headers=auth())).json()
    assert job["status"] == "queued"
    again = await client.post("/jobs/retry", json=body, headers=auth())
    assert again.json()["matched"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2h ago"}, "until"),
        ({"step": "extraction"}, "step"),
        ({"user_id": "someone"}, "user_id"),
        ({"error_contains": ""}, "error_contains"),
        ({"limit": 0}, "limit"),
        ({"status": "complete"}, "status"),
    ],
)
async def test_bulk_retry_names_the_bad_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/jobs/retry", json=body, headers=auth())
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_cancel_a_queued_and_a_running_job(
    client: httpx.AsyncClient, local_store: LocalStore
) -> None:
    running = await seed_job(local_store, run=True)
    queued = await seed_job(local_store)
    withdrawn = await client.post(f"/jobs/{queued.id}/cancel", headers=auth())
    assert withdrawn.status_code == 202
    assert (withdrawn.json()["outcome"], withdrawn.json()["job"]["status"]) == (
        "canceled",
        "canceled",
    )
    status = (await client.get(f"/users/{queued.user_id}/full-pass", headers=auth())).json()
    assert status["full_pass_status"] == "failed"
    assert "canceled by an operator" in status["full_pass_error"]
    requested = await client.post(f"/jobs/{running.id}/cancel", headers=auth())
    assert requested.json()["outcome"] == "cancel_requested"
    assert requested.json()["job"]["cancel_requested_at"] is not None
    failed = await seed_job(local_store, fail="x: Y: z")
    conflict = await client.post(f"/jobs/{failed.id}/cancel", headers=auth())
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "job_conflict")
    assert (await client.post(f"/jobs/{uuid.uuid4()}/cancel", headers=auth())).status_code == 404


async def test_forget_refuses_then_cancels_and_reports_counts(
    client: httpx.AsyncClient, local_store: LocalStore
) -> None:
    job = await seed_job(local_store)
    refused = await client.delete(f"/users/{job.user_id}/data", headers=auth())
    assert refused.status_code == 409
    assert job.id in refused.json()["error"]["message"]
    forgotten = await client.delete(
        f"/users/{job.user_id}/data", params={"cancel": "true"}, headers=auth()
    )
    assert forgotten.status_code == 200
    body = forgotten.json()
    assert body["canceled_job_id"] == job.id
    assert body["removed"] == {"jobs": 1, "events": 2, "fact_cache": 0, "chunks": 0, "temp_dirs": 0}
    assert (body["chunks_included"], body["profile"].startswith("kept")) == (False, True)
    assert (await client.get(f"/jobs/{job.id}", headers=auth())).status_code == 404


async def test_metrics_show_the_operator_counters(
    client: httpx.AsyncClient, local_store: LocalStore
) -> None:
    queued = await seed_job(local_store)
    await client.post(f"/jobs/{queued.id}/cancel", headers=auth())
    text = (await client.get("/metrics", headers=auth())).text
    assert 'soulprint_jobs{status="canceled"} 1.0' in text
    assert 'soulprint_cancels_total{outcome="canceled"}' in text
    assert 'soulprint_job_events_total{kind="canceled",outcome="written"}' in text
    for name in ("soulprint_queue_wait_seconds", "soulprint_jobs_stuck_total"):
        assert f"# TYPE {name}" in text
