"""Shared fixtures: settings isolated from the environment (or, for the CLI, a data directory set
in it), a real local store, and the app served through its own lifespan as production runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.adapters.local_store import LocalStore
from app.config import Settings, get_settings

API_KEY = "test-shared-secret"
USER_ID = "5b0f3c52-8f3a-4c47-9a55-2f6a1f0e9d11"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: no .env file, no environment leaking in beyond what is passed."""
    values: dict[str, Any] = {
        "local_data_dir": tmp_path / "data",
        "rlm_api_key": API_KEY,
        "run_worker": False,
        "log_format": "console",
        "poll_seconds": 0.05,
        "heartbeat_seconds": 0.2,
        "lease_seconds": 5,
        "retry_backoff_seconds": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _clean_settings_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("SUPABASE_URL", "ANTHROPIC_API_KEY", "RLM_API_KEY", "FACT_EXTRACTION_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LOCAL_DATA_DIR for code that reads its settings from the environment, as the CLI does."""
    data = tmp_path / "data"
    monkeypatch.setenv("LOCAL_DATA_DIR", str(data))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    return data


@pytest.fixture
async def local_store(settings: Settings) -> AsyncIterator[LocalStore]:
    store = LocalStore(settings.local_data_dir)
    yield store
    await store.aclose()


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it over ASGI, as a client would over HTTP."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rlm.test") as client:
            yield client


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
