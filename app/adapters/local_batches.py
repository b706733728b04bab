"""A job's Message Batches in the local store: `llm_batches` and `llm_batch_requests` in its
SQLite file (the same semantics as supabase/migrations/20261215000000_llm_batches.sql).

`LocalStore` hands over its way of running a call on the connection and of running one in a
write transaction; this module holds only the batch tables' SQL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from app.adapters.rows import batch_from_row
from app.batch_port import BatchState, LLMBatch
from app.errors import StoreError

__all__ = ["LocalBatches"]

T = TypeVar("T")


class _OnConnection(Protocol):
    def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]: ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class LocalBatches:
    def __init__(self, *, run: _OnConnection, write: _OnConnection) -> None:
        self._run = run
        self._write = write

    async def record(self, batch: LLMBatch, requests: Mapping[str, Sequence[str]]) -> None:
        rows = [(batch.id, cid, json.dumps(list(keys))) for cid, keys in requests.items()]

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO llm_batches (id, job_id, kind, state, provider_batch_id,"
                " request_count, counts, created_at)"
                " VALUES (?, ?, ?, 'submitting', NULL, ?, '{}', ?)",
                (batch.id, batch.job_id, batch.kind, batch.request_count, _now()),
            ).close()
            conn.executemany(
                "INSERT INTO llm_batch_requests (batch_id, custom_id, content_hashes)"
                " VALUES (?, ?, ?)",
                rows,
            ).close()

        try:
            await self._write(insert)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"llm_batches: cannot record batch {batch.id}: {exc}") from exc

    async def update(
        self,
        batch_id: str,
        *,
        state: BatchState,
        provider_batch_id: str | None,
        counts: Mapping[str, int] | None,
    ) -> None:
        now = _now()
        params = {
            "id": batch_id,
            "state": state,
            "provider": provider_batch_id,
            "counts": None if counts is None else json.dumps(dict(counts)),
            "now": now,
        }

        def update(conn: sqlite3.Connection) -> int:
            changed = conn.execute(
                "UPDATE llm_batches SET state = :state,"
                " provider_batch_id = COALESCE(:provider, provider_batch_id),"
                " counts = COALESCE(:counts, counts),"
                " submitted_at = CASE WHEN :state = 'in_progress'"
                " THEN COALESCE(submitted_at, :now) ELSE submitted_at END,"
                " ended_at = CASE WHEN :state = 'ended' THEN COALESCE(ended_at, :now)"
                " ELSE ended_at END WHERE id = :id",
                params,
            ).rowcount
            if state in ("read", "abandoned"):
                conn.execute(
                    "DELETE FROM llm_batch_requests WHERE batch_id = ?", (batch_id,)
                ).close()
            return changed

        if await self._write(update) == 0:
            raise StoreError(f"no llm_batches row {batch_id}", table="llm_batches")

    async def of_job(self, job_id: str) -> list[LLMBatch]:
        def read(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT * FROM llm_batches WHERE job_id = ? ORDER BY created_at, id", (job_id,)
            ).fetchall()

        return [batch_from_row(dict(row)) for row in await self._run(read)]

    async def requests(self, batch_id: str) -> dict[str, list[str]]:
        def read(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT custom_id, content_hashes FROM llm_batch_requests WHERE batch_id = ?",
                (batch_id,),
            ).fetchall()

        return {
            row["custom_id"]: list(json.loads(row["content_hashes"]))
            for row in await self._run(read)
        }
