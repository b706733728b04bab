"""Fixtures for the store contract suite: the same tests against `LocalStore` (SQLite, for real)
and `SupabaseStore` (over respx + fake_postgrest, on the migrated real PostgreSQL)."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import psycopg.sql
import pytest
import respx

from app.adapters.local_store import LocalStore
from app.adapters.supabase_store import SupabaseStore
from app.ports import Store
from tests.support import pg
from tests.support.fake_postgrest import FakeSupabase

_URL = "https://contract.supabase.test"


@dataclass
class StoreHarness:
    """A store plus the seeding the product would do outside this service."""

    store: Store
    add_profile: Callable[[str], Awaitable[None]]
    put_export: Callable[[str, Path], None]
    # (user_id, content_hash, extractor_version, facts as JSON text): a row as another writer,
    # an older version or a bug may have left it, bypassing the store's own encoding.
    put_raw_cache_entry: Callable[[str, str, str, str], None]
    # Set processing_jobs columns behind the store's back (controlled timestamps for the queue
    # order and the bulk-retry windows).
    set_job: Callable[..., Awaitable[None]]


def _sqlite_value(value: Any) -> Any:
    return value.isoformat(timespec="microseconds") if isinstance(value, datetime) else value


@pytest.fixture(scope="session")
def store_database() -> Iterator[str]:
    with pg.migrated_database("soulprint_store") as conninfo:
        yield conninfo


async def _local(tmp_path: Path) -> AsyncIterator[StoreHarness]:
    store = LocalStore(tmp_path / "data")

    def put(storage_path: str, source: Path) -> None:
        store.put_export(storage_path, source)

    def put_raw(user_id: str, content_hash: str, version: str, facts: str) -> None:
        with closing(sqlite3.connect(store.db_path)) as db, db:
            db.execute(
                "INSERT INTO fact_extraction_cache VALUES (?, ?, ?, ?, '2026-03-01T00:00:00')",
                (user_id, content_hash, version, facts),
            )

    async def set_job(job_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{column} = ?" for column in values)
        params = (*(_sqlite_value(v) for v in values.values()), job_id)
        sql = f"UPDATE processing_jobs SET {assignments} WHERE id = ?"  # noqa: S608
        await store._write(lambda conn: conn.execute(sql, params).close())

    yield StoreHarness(
        store=store,
        add_profile=store.ensure_profile,
        put_export=put,
        put_raw_cache_entry=put_raw,
        set_job=set_job,
    )
    await store.aclose()


async def _supabase(conninfo: str, tmp_path: Path) -> AsyncIterator[StoreHarness]:
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(
            "TRUNCATE processing_jobs, processing_job_events, conversation_chunks,"
            " fact_extraction_cache, llm_batches, llm_batch_requests"
        )
    storage = tmp_path / "storage"
    storage.mkdir()
    fake = FakeSupabase(conninfo, storage)

    async def add_profile(user_id: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute("INSERT INTO auth.users (id) VALUES (%s)", (user_id,))
            admin.execute("INSERT INTO user_profiles (user_id) VALUES (%s)", (user_id,))

    def put_export(storage_path: str, source: Path) -> None:
        target = storage / storage_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)

    def put_raw(user_id: str, content_hash: str, version: str, facts: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(
                "INSERT INTO fact_extraction_cache"
                " (user_id, content_hash, extractor_version, facts) VALUES (%s, %s, %s, %s::jsonb)",
                (user_id, content_hash, version, facts),
            )

    async def set_job(job_id: str, **values: Any) -> None:
        assignments = psycopg.sql.SQL(", ").join(
            psycopg.sql.SQL("{} = %s").format(psycopg.sql.Identifier(column)) for column in values
        )
        statement = psycopg.sql.SQL("UPDATE processing_jobs SET {} WHERE id = %s").format(
            assignments
        )
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(statement, (*values.values(), job_id))

    with respx.mock(base_url=_URL, assert_all_called=False) as router:
        router.route().mock(side_effect=fake)
        async with httpx.AsyncClient() as client:
            store = SupabaseStore(
                client, url=_URL, service_key="contract-key", max_retries=0, retry_base_delay=0
            )
            yield StoreHarness(
                store=store,
                add_profile=add_profile,
                put_export=put_export,
                put_raw_cache_entry=put_raw,
                set_job=set_job,
            )
            await store.aclose()
    fake.close()


@pytest.fixture(params=["local", "supabase"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreHarness]:
    if request.param == "local":
        async for h in _local(tmp_path):
            yield h
    else:
        conninfo = request.getfixturevalue("store_database")
        async for h in _supabase(conninfo, tmp_path):
            yield h


@pytest.fixture
def new_user() -> Callable[[], str]:
    return lambda: str(uuid.uuid4())
