"""The two stores a set of service processes can share, seen from the test: the settings that point
a process at it, the seeding the product does outside this service, enqueueing through our own
store adapter, and read-only SQL for checking the outcome (the same table names in both)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Protocol

import httpx
import psycopg

from app.adapters.local_store import LocalStore
from app.adapters.supabase_store import SupabaseStore
from app.domain import NewJob
from tests.support.postgrest_server import PostgrestServer

__all__ = ["Backend", "LocalBackend", "PostgresBackend", "sqlite_rows"]

SERVICE_KEY = "process-test-service-key"


class Backend(Protocol):
    name: str

    def settings(self) -> dict[str, Any]: ...
    def seed(self, user_id: str, storage_path: str, export: Path) -> None: ...
    def enqueue(self, user_id: str, storage_path: str, *, max_attempts: int = 3) -> str: ...
    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]: ...


def sqlite_rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the service's SQLite file directly (read-only), as an operator would."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


class LocalBackend:
    name = "sqlite"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.db = data_dir / "soulprint.db"

    def settings(self) -> dict[str, Any]:
        return {"local_data_dir": self.data_dir}

    def _with_store(self, use: Any) -> Any:
        async def go() -> Any:
            store = LocalStore(self.data_dir)
            try:
                return await use(store)
            finally:
                await store.aclose()

        return asyncio.run(go())

    def seed(self, user_id: str, storage_path: str, export: Path) -> None:
        async def seed(store: LocalStore) -> None:
            await store.ensure_profile(user_id)
            store.put_export(storage_path, export)

        self._with_store(seed)

    def enqueue(self, user_id: str, storage_path: str, *, max_attempts: int = 3) -> str:
        async def enqueue(store: LocalStore) -> str:
            job, _ = await store.enqueue_job(
                NewJob(user_id=user_id, storage_path=storage_path, max_attempts=max_attempts)
            )
            return job.id

        job_id: str = self._with_store(enqueue)
        return job_id

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return sqlite_rows(self.db, sql, *params)


class PostgresBackend:
    """PostgreSQL with the migrations applied, reached by the service only through PostgREST."""

    name = "postgres"

    def __init__(self, conninfo: str, server: PostgrestServer, storage_dir: Path) -> None:
        self.conninfo = conninfo
        self.server = server
        self.storage_dir = storage_dir

    def settings(self) -> dict[str, Any]:
        return {"supabase_url": self.server.base_url, "supabase_service_key": SERVICE_KEY}

    def seed(self, user_id: str, storage_path: str, export: Path) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute("INSERT INTO auth.users (id) VALUES (%s)", (user_id,))
            conn.execute("INSERT INTO user_profiles (user_id) VALUES (%s)", (user_id,))
        target = self.storage_dir / storage_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(export, target)

    def enqueue(self, user_id: str, storage_path: str, *, max_attempts: int = 3) -> str:
        async def go() -> str:
            async with httpx.AsyncClient() as client:
                store = SupabaseStore(client, url=self.server.base_url, service_key=SERVICE_KEY)
                job, _ = await store.enqueue_job(
                    NewJob(user_id=user_id, storage_path=storage_path, max_attempts=max_attempts)
                )
                return job.id

        return asyncio.run(go())

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params)
            return [tuple(str(v) if isinstance(v, uuid.UUID) else v for v in r) for r in cursor]
