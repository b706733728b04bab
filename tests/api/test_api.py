"""The HTTP API as a client sees it: every acceptance and every rejection of DESIGN §5."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.adapters.local_store import LocalStore
from app.config import Settings
from app.errors import ConfigError
from app.main import check_settings, create_app
from tests.conftest import API_KEY, USER_ID, auth, make_settings, serve

OTHER_USER = "0d4b8c1e-2222-4a4a-8b8b-123456789abc"
VALID_PATH = f"imports/{USER_ID}/1700000000-conversations.json"


@pytest.fixture
async def client(settings: Settings, local_store: LocalStore) -> httpx.AsyncClient:
    await local_store.ensure_profile(USER_ID)
    app = create_app(settings, store=local_store, pipelines={})
    async with serve(app) as client:
        yield client  # type: ignore[misc]


def _body(**overrides: object) -> dict[str, object]:
    return {"user_id": USER_ID, "storage_path": VALID_PATH, **overrides}


async def test_health_needs_no_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_ready_reports_store_and_llm(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready", headers=auth())
    assert response.status_code == 200
    assert response.json()["store"] == "LocalStore"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Basic {API_KEY}"}, 401),
        ({"X-RLM-API-Key": "wrong"}, 401),
        ({"Authorization": f"Bearer {API_KEY}"}, 202),
        ({"X-RLM-API-Key": API_KEY}, 202),
    ],
)
async def test_auth_on_process(
    client: httpx.AsyncClient, headers: dict[str, str], expected: int
) -> None:
    response = await client.post("/process-full-v2", json=_body(), headers=headers)
    assert response.status_code == expected
    if expected == 401:
        assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "path", ["/ready", "/metrics", f"/jobs/{USER_ID}", f"/users/{USER_ID}/full-pass"]
)
async def test_every_endpoint_but_health_needs_the_key(
    client: httpx.AsyncClient, path: str
) -> None:
    assert (await client.get(path)).status_code == 401


async def test_process_queues_a_job_and_marks_the_profile(
    client: httpx.AsyncClient, local_store: LocalStore
) -> None:
    response = await client.post(
        "/process-full-v2", json=_body(conversation_count=12, message_count=340), headers=auth()
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "processing"
    assert body["version"] == "v2"
    assert body["user_id"] == USER_ID
    assert body["created"] is True
    assert body["job"]["status"] == "queued"
    assert body["job"]["conversation_count"] == 12
    profile = await local_store.get_profile_status(USER_ID)
    assert profile is not None
    assert profile["full_pass_status"] == "processing"
    assert profile["full_pass_started_at"] is not None
    assert profile["full_pass_error"] is None


async def test_metrics_count_jobs_by_status(client: httpx.AsyncClient) -> None:
    await client.post("/process-full-v2", json=_body(), headers=auth())
    response = await client.get("/metrics", headers=auth())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'soulprint_jobs{status="queued"} 1.0' in response.text
    assert 'soulprint_jobs{status="failed"} 0.0' in response.text
    assert "soulprint_llm_calls_in_flight" in response.text


async def test_second_request_returns_the_active_job(client: httpx.AsyncClient) -> None:
    first = await client.post("/process-full-v2", json=_body(), headers=auth())
    second = await client.post("/process-full-v2", json=_body(), headers=auth())
    assert second.status_code == 202
    assert second.json()["job_id"] == first.json()["job_id"]
    assert second.json()["created"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_body(user_id="not-a-uuid"), "user_id"),
        (_body(user_id=None), "user_id"),
        ({"storage_path": VALID_PATH}, "user_id"),
        ({"user_id": USER_ID}, "storage_path"),
        (_body(storage_path=f"imports/{USER_ID}/../{OTHER_USER}/x.json"), "storage_path"),
        (_body(storage_path=f"/imports/{USER_ID}/x.json"), "storage_path"),
        (_body(storage_path=f"secrets/{USER_ID}/x.json"), "storage_path"),
        (_body(storage_path=f"imports/{OTHER_USER}/x.json"), "storage_path"),
        (_body(storage_path=f"imports/{USER_ID}"), "storage_path"),
        (_body(storage_path=f"imports/{USER_ID}//x.json"), "storage_path"),
        (_body(storage_path=f"imports\\{USER_ID}\\x.json"), "storage_path"),
        (_body(conversation_count=-1), "conversation_count"),
        (_body(message_count="many"), "message_count"),
    ],
)
async def test_bad_requests_name_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/process-full-v2", json=body, headers=auth())
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["field"] == field
    assert field in error["message"]


async def test_body_that_is_not_json_is_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/process-full-v2",
        content=b"{not json",
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_oversized_bodies_get_413(client: httpx.AsyncClient) -> None:
    padded = _body(padding="x" * 20_000)
    declared = await client.post("/process-full-v2", json=padded, headers=auth())
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> object:
        yield b'{"user_id": "' + USER_ID.encode() + b'", "padding": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'"}'

    streamed = await client.post(
        "/process-full-v2",
        content=chunks(),  # type: ignore[arg-type]
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413


async def test_user_without_profile_is_told_so(client: httpx.AsyncClient) -> None:
    body = _body(user_id=OTHER_USER, storage_path=f"imports/{OTHER_USER}/x.json")
    response = await client.post("/process-full-v2", json=body, headers=auth())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "profile_not_found"
    assert OTHER_USER in response.json()["error"]["message"]


async def test_job_and_user_status(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/process-full-v2", json=_body(), headers=auth())).json()["job_id"]
    job = await client.get(f"/jobs/{job_id}", headers=auth())
    assert job.status_code == 200
    assert job.json()["job_id"] == job_id
    assert job.json()["progress"] == 0
    status = await client.get(f"/users/{USER_ID}/full-pass", headers=auth())
    assert status.status_code == 200
    assert status.json()["full_pass_status"] == "processing"
    assert status.json()["job"]["job_id"] == job_id


async def test_unknown_job_and_user(client: httpx.AsyncClient) -> None:
    missing = await client.get(f"/jobs/{OTHER_USER}", headers=auth())
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "job_not_found"
    assert (await client.get("/jobs/nope", headers=auth())).status_code == 422
    assert (await client.get(f"/users/{OTHER_USER}/full-pass", headers=auth())).status_code == 404


async def test_retry_only_a_failed_job(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/process-full-v2", json=_body(), headers=auth())).json()["job_id"]
    response = await client.post(f"/jobs/{job_id}/retry", headers=auth())
    assert response.status_code == 409
    assert "only a failed job" in response.json()["error"]["message"]


def test_supabase_without_api_key_refuses_to_start(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, supabase_url="https://x.supabase.co", supabase_service_key="k", rlm_api_key=None
    )
    with pytest.raises(ConfigError, match="RLM_API_KEY"):
        create_app(settings)
    check_settings(settings, serving=False)  # a worker answers no HTTP: no key needed
    allowed = make_settings(
        tmp_path,
        supabase_url="https://x.supabase.co",
        supabase_service_key="k",
        rlm_api_key=None,
        allow_unauthenticated=True,
    )
    assert create_app(allowed) is not None


async def test_local_store_without_key_is_open(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rlm_api_key=None)
    store = LocalStore(settings.local_data_dir)
    await store.ensure_profile(USER_ID)
    async with serve(create_app(settings, store=store, pipelines={})) as client:
        response = await client.post("/process-full-v2", json=_body())
    await store.aclose()
    assert response.status_code == 202
