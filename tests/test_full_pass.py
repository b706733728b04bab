"""A whole full pass driven through the API, as production runs it: the runner in the lifespan, the
real local store, and either the offline provider or the real Anthropic SDK against the local
Messages-API simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.adapters.local_store import LocalStore
from app.config import Settings
from app.domain import FactCategory
from app.main import create_app
from tests.conftest import USER_ID, auth, make_settings, serve
from tests.support.messages_simulator import SimulatorConfig, running_simulator

STORAGE_PATH = f"imports/{USER_ID}/export.json"
SAMPLE = Path(str(resources.files("app.sample_data").joinpath("sample-export.json")))
SOULPRINT_HEADINGS = (
    "Communication Style & Personality",
    "Your AI Identity",
    "About You",
    "How I Operate",
    "My Capabilities",
    "Memory",
)
SECTION_FIELDS = {
    "soul_md": 7,
    "identity_md": 5,
    "user_md": 7,
    "agents_md": 5,
    "tools_md": 4,
}


async def _start(
    client: httpx.AsyncClient, *, storage_path: str = STORAGE_PATH, force: bool = False
) -> dict[str, Any]:
    body = {"user_id": USER_ID, "storage_path": storage_path, "force": force}
    response = await client.post("/process-full-v2", json=body, headers=auth())
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def _until_done(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        job: dict[str, Any] = (await client.get(f"/jobs/{job_id}", headers=auth())).json()
        if job["status"] in ("complete", "failed"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[LocalStore]:
    store = LocalStore(settings.local_data_dir)
    await store.ensure_profile(USER_ID)
    store.put_export(STORAGE_PATH, SAMPLE)
    yield store
    await store.aclose()


def _sample(exposition: str, name: str) -> float:
    """One sample's value from Prometheus text exposition."""
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def _assert_portrait(profile: dict[str, Any]) -> None:
    assert profile["full_pass_status"] == "complete"
    assert profile["full_pass_error"] is None
    assert profile["full_pass_completed_at"] is not None
    memory = profile["memory_md"]
    positions = [memory.index(f"## {category.value}") for category in FactCategory]
    assert positions == sorted(positions)
    for column, fields in SECTION_FIELDS.items():
        section = json.loads(profile[column])
        assert len(section) == fields, column
        assert all(value not in ("", None) for value in section.values()), column
    identity = json.loads(profile["identity_md"])
    assert identity["ai_name"].lower() not in {
        "assistant",
        "ai",
        "bot",
        "helper",
        "not enough data",
    }
    text = profile["soulprint_text"]
    order = [text.index(f"## {heading}\n") for heading in SOULPRINT_HEADINGS]
    assert order == sorted(order)


async def test_offline_full_pass_then_resent_and_forced_reruns_pay_nothing(
    settings: Settings, store: LocalStore, tmp_path: Path
) -> None:
    app = create_app(make_settings(tmp_path, run_worker=True), store=store)
    async with serve(app) as client:
        first = await _until_done(client, (await _start(client))["job_id"])
        assert first["status"] == "complete", first["error"]
        profile = await store.get_profile(USER_ID)
        assert profile is not None
        _assert_portrait(profile)
        assert "offline" in profile["memory_md"].lower()
        # Facts the sample states in the user's own words reach MEMORY.
        assert "Lisbon" in profile["memory_md"]
        assert first["llm_provider"] == "offline"
        assert first["conversation_count"] == 6
        assert first["chunk_count"] == await store.count_chunks(USER_ID)
        first_extract = first["stats"]["counts"]["extract_facts"]
        assert first_extract["calls"] > 0

        metrics = (await client.get("/metrics", headers=auth())).text
        assert 'soulprint_jobs{status="complete"} 1.0' in metrics
        assert _sample(metrics, 'soulprint_llm_calls_total{outcome="ok",task="extract_facts"}') > 0
        assert _sample(metrics, 'soulprint_step_duration_seconds_count{step="extract_facts"}') > 0
        hits_before = _sample(metrics, "soulprint_fact_cache_hits_total")

        # The same export sent again: the profile already holds its portrait; nothing re-runs.
        resent = await _until_done(client, (await _start(client))["job_id"])
        assert resent["status"] == "complete"
        assert resent["stats"]["counts"]["complete"] == {"unchanged_export_of": first["job_id"]}
        assert "extract_facts" not in resent["stats"]["counts"]
        after = await store.get_profile(USER_ID)
        assert after is not None
        portrait = ("memory_md", "soulprint_text", *SECTION_FIELDS)
        assert {k: after[k] for k in portrait} == {k: profile[k] for k in portrait}
        assert after["full_pass_status"] == "complete"

        # `force` runs the pass again; every chunk is answered by the fact cache.
        forced = await _until_done(client, (await _start(client, force=True))["job_id"])
        assert forced["status"] == "complete"
        metrics = (await client.get("/metrics", headers=auth())).text
        assert _sample(metrics, "soulprint_fact_cache_hits_total") > hits_before
        again = forced["stats"]["counts"]["extract_facts"]
        assert again["calls"] == 0
        assert again["cached"] == first_extract["chunks"]
        assert await store.count_chunks(USER_ID) == first["chunk_count"]


async def test_full_pass_through_the_real_sdk_and_simulator(
    store: LocalStore, tmp_path: Path
) -> None:
    config = SimulatorConfig(script=("rate_limited", "overloaded"), retry_after_s=0.05)
    with running_simulator(config) as simulator:
        settings = make_settings(
            tmp_path,
            run_worker=True,
            anthropic_api_key="sk-ant-test",
            anthropic_base_url=simulator.base_url,
            anthropic_max_retries=3,
        )
        async with serve(create_app(settings, store=store)) as client:
            job = await _until_done(client, (await _start(client))["job_id"])
        ledger = simulator.ledger()
    assert job["status"] == "complete", job["error"]
    assert job["llm_provider"] == "anthropic"
    assert ledger["by_outcome"]["rate_limited"] == 1
    assert ledger["by_outcome"]["overloaded"] == 1
    assert job["input_tokens"] > 0
    assert job["cost_usd"] > 0
    llm_steps = job["stats"]["llm"]["steps"]
    assert llm_steps["extract_facts"]["retries"] == 2
    profile = await store.get_profile(USER_ID)
    assert profile is not None
    _assert_portrait(profile)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "chunk_conversations: BadExport: "),
        (b"[]", "chunk_conversations: BadExport: "),
        (None, "download_conversations: ExportNotFound: "),
    ],
)
async def test_bad_input_fails_the_job_with_a_readable_error(
    settings: Settings, tmp_path: Path, content: bytes | None, expected: str
) -> None:
    store = LocalStore(settings.local_data_dir)
    await store.ensure_profile(USER_ID)
    if content is not None:
        source = tmp_path / "upload.json"
        source.write_bytes(content)
        store.put_export(STORAGE_PATH, source)
    app = create_app(make_settings(tmp_path, run_worker=True), store=store)
    async with serve(app) as client:
        job = await _until_done(client, (await _start(client))["job_id"])
        status = (await client.get(f"/users/{USER_ID}/full-pass", headers=auth())).json()
    await store.aclose()
    assert job["status"] == "failed"
    assert job["attempts"] == 1  # a bad export is not retried
    assert status["full_pass_status"] == "failed"
    assert status["full_pass_error"].startswith(expected)
    assert len(status["full_pass_error"]) <= 500
