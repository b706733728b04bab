"""`/mcp` in the service: a real uvicorn serving `create_app`, the SDK's streamable-HTTP client."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from app.adapters.local_store import LocalStore
from app.config import Settings
from app.domain import JobStatus, NewJob
from app.main import create_app
from tests.conftest import API_KEY, USER_ID, make_settings
from tests.support.serving import serve_in_thread

SAMPLE = Path(__file__).resolve().parents[2] / "app" / "sample_data" / "sample-export.json"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


async def _failed_job(settings: Settings) -> str:
    store = LocalStore(settings.local_data_dir)
    try:
        await store.ensure_profile(USER_ID)
        job, _ = await store.enqueue_job(
            NewJob(user_id=USER_ID, storage_path=f"imports/{USER_ID}/export.json")
        )
        await store.claim_job(worker_id="w", lease_seconds=60)
        await store.finish_job(
            job_id=job.id,
            worker_id="w",
            status=JobStatus.FAILED,
            error_message="download_conversations: ExportNotFound: no export at that path",
        )
    finally:
        await store.aclose()
    return job.id


def _served(settings: Settings) -> Iterator[str]:
    with serve_in_thread(create_app(settings), name="mcp-http", lifespan="on") as base_url:
        yield base_url


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    yield from _served(settings)


@asynccontextmanager
async def mcp_client(url: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    async with (
        asyncio.timeout(30),
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Bearer wrong"}, "invalid API key"),
        ({"X-RLM-API-Key": "wrong"}, "invalid API key"),
    ],
)
async def test_unauthorized_without_the_key(
    base_url: str, headers: dict[str, str], message: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base_url}/mcp", json=INITIALIZE, headers=MCP_HEADERS | headers
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    assert message in response.json()["error"]["message"]

    with pytest.raises(BaseExceptionGroup) as refused:
        async with mcp_client(f"{base_url}/mcp", headers):
            pass
    assert refused.group_contains(MCPError, depth=None)


@pytest.mark.parametrize(
    "headers", [{"Authorization": f"Bearer {API_KEY}"}, {"X-RLM-API-Key": API_KEY}]
)
async def test_works_with_the_key_on_the_services_store(
    settings: Settings, headers: dict[str, str]
) -> None:
    job_id = await _failed_job(settings)
    for base_url in _served(settings):
        async with mcp_client(f"{base_url}/mcp", headers) as client:
            tools = sorted(tool.name for tool in (await client.list_tools()).tools)
            assert tools == ["full_pass_status", "inspect_export", "process_export", "retry_job"]

            status = await client.call_tool("full_pass_status", {"job_or_user_id": job_id})
            assert _structured(status)["status"] == "failed"
            retried = await client.call_tool("retry_job", {"job_id": job_id})
            assert _structured(retried)["status"] == "queued"
            again = await client.call_tool("retry_job", {"job_id": job_id})
            assert again.is_error
            # The API sees what the tool did: one store.
            async with httpx.AsyncClient(headers=headers) as http:
                job = (await http.get(f"{base_url}/jobs/{job_id}")).json()
            assert (job["status"], job["attempts"]) == ("queued", 0)

            # Over HTTP the path tools read only the service's export folder.
            outside = await client.call_tool("process_export", {"path": str(SAMPLE)})
            assert outside.is_error
            assert "export folder" in getattr(outside.content[0], "text", "")
            escape = await client.call_tool("inspect_export", {"path": "../soulprint.db"})
            assert escape.is_error
            processed = await client.call_tool("process_export", {"path": _placed(settings)})
            files = _structured(processed)["files"]
            memory = await client.read_resource("soulprint://workspace/latest/MEMORY.md")
            assert getattr(memory.contents[0], "text", None) == files["MEMORY.md"]


async def test_open_on_localhost_when_no_key_is_configured(tmp_path: Path) -> None:
    for base_url in _served(make_settings(tmp_path, rlm_api_key=None)):
        async with mcp_client(f"{base_url}/mcp", {}) as client:
            path = _placed(make_settings(tmp_path, rlm_api_key=None))
            inspected = await client.call_tool("inspect_export", {"path": path})
            assert _structured(inspected)["conversations"] == 6

        # Open only to this machine: a page elsewhere that rebinds its name here is refused.
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{base_url}/mcp",
                json=INITIALIZE,
                headers=MCP_HEADERS | {"Host": "attacker.example"},
            )
        assert response.status_code == 421


def _placed(settings: Settings) -> str:
    """The sample, placed in the service's export folder; its path relative to it."""
    target = settings.local_data_dir / "storage" / "imports" / "mcp" / "sample.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLE, target)
    return "imports/mcp/sample.json"


def _structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    content: dict[str, Any] = result.structured_content
    return content
