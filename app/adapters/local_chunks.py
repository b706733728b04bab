"""The user's `conversation_chunks` in the local store: one import's rows saved as a generation,
then committed whole or rolled back (the same semantics as `save_conversation_chunks`,
`commit_conversation_chunks` and `rollback_conversation_chunks` in supabase/migrations, checked
by the contract suite on both)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from app.adapters.rows import chunk_row, format_timestamp
from app.domain import Chunk

__all__ = ["LocalChunkStore"]

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


class LocalChunkStore:
    """Mixed into `LocalStore`, which provides `_run` and `_write`."""

    if TYPE_CHECKING:

        async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def upsert_chunks(self, *, user_id: str, job_id: str, chunks: Sequence[Chunk]) -> None:
        if not chunks:
            return
        now = _now()
        # One row per id (an export may hold the same conversation twice), in id order.
        unique = {chunk.id: chunk for chunk in chunks}
        rows = [
            chunk_row(unique[key], user_id=user_id, job_id=job_id, now=now)
            for key in sorted(unique)
        ]
        columns = list(rows[0])
        updates = ", ".join(
            f"{c} = excluded.{c}" for c in columns if c not in ("id", "user_id", "import_job_id")
        )
        sql = (
            f"INSERT INTO conversation_chunks ({', '.join(columns)})"  # noqa: S608
            f" VALUES ({', '.join(':' + c for c in columns)})"
            f" ON CONFLICT (id) DO UPDATE SET {updates},"
            " prior_import_job_id = CASE WHEN import_job_id IS excluded.import_job_id"
            " THEN prior_import_job_id ELSE COALESCE(import_job_id, 'none') END,"
            " import_job_id = excluded.import_job_id"
            " WHERE conversation_chunks.user_id = excluded.user_id"
        )
        params = [
            {k: format_timestamp(v) if isinstance(v, datetime) else v for k, v in row.items()}
            for row in rows
        ]
        await self._write(lambda conn: conn.executemany(sql, params).close())

    async def commit_chunks(self, *, user_id: str, job_id: str) -> int:
        def commit(conn: sqlite3.Connection) -> int:
            removed = conn.execute(
                "DELETE FROM conversation_chunks WHERE user_id = ?"
                " AND (import_job_id IS NULL OR import_job_id != ?)",
                (user_id, job_id),
            ).rowcount
            conn.execute(
                "INSERT INTO conversation_chunk_imports (user_id, import_job_id, committed_at)"
                " VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
                " import_job_id = excluded.import_job_id, committed_at = excluded.committed_at",
                (user_id, job_id, format_timestamp(_now())),
            ).close()
            return removed

        return await self._write(commit)

    async def rollback_chunks(self, *, user_id: str, job_id: str) -> tuple[int, int]:
        def rollback(conn: sqlite3.Connection) -> tuple[int, int]:
            committed = conn.execute(
                "SELECT 1 FROM conversation_chunk_imports WHERE user_id = ? AND import_job_id = ?",
                (user_id, job_id),
            ).fetchone()
            if committed is not None:
                return 0, 0
            removed = conn.execute(
                "DELETE FROM conversation_chunks WHERE user_id = ? AND import_job_id = ?"
                " AND prior_import_job_id IS NULL",
                (user_id, job_id),
            ).rowcount
            restored = conn.execute(
                "UPDATE conversation_chunks SET"
                " import_job_id = NULLIF(prior_import_job_id, 'none'), prior_import_job_id = NULL"
                " WHERE user_id = ? AND import_job_id = ?",
                (user_id, job_id),
            ).rowcount
            return removed, restored

        return await self._write(rollback)

    async def count_chunks(self, user_id: str) -> int:
        sql = "SELECT COUNT(*) FROM conversation_chunks WHERE user_id = ?"
        row = await self._run(lambda conn: conn.execute(sql, (user_id,)).fetchone())
        return int(row[0])
