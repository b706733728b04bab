"""The fact cache of the local store: `fact_extraction_cache` in its SQLite file.

`LocalStore` hands over its way of running a call on the connection (in a thread, under its lock)
and of running one in a write transaction; this module holds only the fact cache's SQL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Protocol, TypeVar

from app.adapters.fact_cache import HASHES_PER_DELETE, entry_of, usable_facts
from app.domain import Fact, fact_to_json
from app.ports import FactCacheEntry, FactCacheKey

__all__ = ["LocalFactCache"]

T = TypeVar("T")
_HASHES_PER_READ = 500  # bound parameters per statement stay far below SQLite's limit


class _OnConnection(Protocol):
    def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]: ...


class LocalFactCache:
    def __init__(self, *, run: _OnConnection, write: _OnConnection) -> None:
        self._run = run
        self._write = write

    async def get(
        self, *, user_id: str, extractor_version: str, content_hashes: Sequence[str]
    ) -> dict[str, list[Fact]]:
        hashes = list(dict.fromkeys(content_hashes))
        if not hashes:
            return {}

        def read(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            found: list[sqlite3.Row] = []
            for start in range(0, len(hashes), _HASHES_PER_READ):
                batch = hashes[start : start + _HASHES_PER_READ]
                marks = ", ".join("?" for _ in batch)
                found += conn.execute(
                    "SELECT content_hash, facts FROM fact_extraction_cache"  # noqa: S608
                    f" WHERE user_id = ? AND extractor_version = ? AND content_hash IN ({marks})",
                    (user_id, extractor_version, *batch),
                ).fetchall()
            return found

        rows = [dict(row) for row in await self._run(read)]
        return usable_facts(rows, user_id=user_id, extractor_version=extractor_version)

    async def put(
        self, *, user_id: str, extractor_version: str, entries: Mapping[str, Sequence[Fact]]
    ) -> None:
        if not entries:
            return
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        params = [
            (user_id, digest, extractor_version, json.dumps([fact_to_json(f) for f in facts]), now)
            for digest, facts in entries.items()
        ]
        sql = (
            "INSERT INTO fact_extraction_cache"
            " (user_id, content_hash, extractor_version, facts, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, content_hash, extractor_version)"
            " DO UPDATE SET facts = excluded.facts, created_at = excluded.created_at"
        )
        await self._write(lambda conn: conn.executemany(sql, params).close())

    async def scan(
        self, *, user_id: str | None, page_size: int
    ) -> AsyncIterator[list[FactCacheEntry]]:
        after: FactCacheKey | None = None
        while True:
            rows = await self._run(_page_reader(user_id=user_id, after=after, limit=page_size))
            if not rows:
                return
            page = [entry_of(dict(row)) for row in rows]
            after = page[-1].key
            yield page

    async def delete(self, keys: Sequence[FactCacheKey]) -> int:
        rows = [(k.user_id, k.content_hash, k.extractor_version) for k in dict.fromkeys(keys)]
        removed = 0
        for start in range(0, len(rows), HASHES_PER_DELETE):
            removed += await self._write(
                partial(_delete, rows=rows[start : start + HASHES_PER_DELETE])
            )
        return removed


def _delete(conn: sqlite3.Connection, *, rows: list[tuple[str, str, str]]) -> int:
    cursor = conn.executemany(
        "DELETE FROM fact_extraction_cache"
        " WHERE user_id = ? AND content_hash = ? AND extractor_version = ?",
        rows,
    )
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def _page_reader(
    *, user_id: str | None, after: FactCacheKey | None, limit: int
) -> Callable[[sqlite3.Connection], list[sqlite3.Row]]:
    """One keyset page in primary-key order: (user_id, content_hash, extractor_version)."""
    where, params = [], []
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    if after is not None:
        where.append("(user_id, content_hash, extractor_version) > (?, ?, ?)")
        params += [after.user_id, after.content_hash, after.extractor_version]
    sql = (
        "SELECT user_id, content_hash, extractor_version, facts FROM fact_extraction_cache"  # noqa: S608
        f" WHERE {' AND '.join(where) or '1'}"
        " ORDER BY user_id, content_hash, extractor_version LIMIT ?"
    )

    def read(conn: sqlite3.Connection) -> list[sqlite3.Row]:
        return conn.execute(sql, (*params, limit)).fetchall()

    return read
