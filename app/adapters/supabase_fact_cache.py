"""The fact cache of the Supabase store: `fact_extraction_cache` over PostgREST.

Every request is bounded: reads by a URL-sized list of hashes or a keyset page under PostgREST's
silent 1,000-row cap, writes and deletes in batches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime

from app.adapters.fact_cache import HASHES_PER_DELETE, entry_of, usable_facts
from app.adapters.postgrest import SupabaseHttp, quoted, quoted_list
from app.domain import Fact, fact_to_json
from app.ports import FactCacheEntry, FactCacheKey

__all__ = ["SupabaseFactCache"]

_TABLE = "fact_extraction_cache"
_PATH = f"/rest/v1/{_TABLE}"
_KEY = "user_id,content_hash,extractor_version"
# In-list filters travel in the URL: 100 hashes of 64 hex chars keep it near 7 KB, and a batch
# can never reach PostgREST's silent 1,000-row cap (the key makes each hash match one row).
_HASHES_PER_READ = 100


def _after(key: FactCacheKey, *, one_user: bool) -> str:
    """The keyset condition "after `key`" in (user_id, content_hash, extractor_version) order."""
    hash_, version = quoted(key.content_hash), quoted(key.extractor_version)
    within_user = (
        f"content_hash.gt.{hash_},and(content_hash.eq.{hash_},extractor_version.gt.{version})"
    )
    if one_user:
        return f"({within_user})"
    user = key.user_id
    return f"(user_id.gt.{user},and(user_id.eq.{user},or({within_user})))"


class SupabaseFactCache:
    def __init__(self, http: SupabaseHttp, *, batch_size: int) -> None:
        self._http = http
        self._batch = batch_size

    async def get(
        self, *, user_id: str, extractor_version: str, content_hashes: Sequence[str]
    ) -> dict[str, list[Fact]]:
        hashes = list(dict.fromkeys(content_hashes))
        found: dict[str, list[Fact]] = {}
        for start in range(0, len(hashes), _HASHES_PER_READ):
            rows = await self._http.select(
                _TABLE,
                {
                    "user_id": f"eq.{user_id}",
                    "extractor_version": f"eq.{extractor_version}",
                    "content_hash": f"in.{quoted_list(hashes[start : start + _HASHES_PER_READ])}",
                    "select": "content_hash,facts",
                },
            )
            found |= usable_facts(rows, user_id=user_id, extractor_version=extractor_version)
        return found

    async def put(
        self, *, user_id: str, extractor_version: str, entries: Mapping[str, Sequence[Fact]]
    ) -> None:
        now = datetime.now(UTC).isoformat()
        rows = [
            {
                "user_id": user_id,
                "content_hash": content_hash,
                "extractor_version": extractor_version,
                "facts": [fact_to_json(f) for f in facts],
                "created_at": now,
            }
            for content_hash, facts in entries.items()
        ]
        for start in range(0, len(rows), self._batch):
            batch = rows[start : start + self._batch]
            await self._http.request(
                "POST",
                _PATH,
                table=_TABLE,
                action="upsert",
                params={"on_conflict": _KEY, "columns": ",".join(batch[0])},
                json=batch,
                headers={"Prefer": "resolution=merge-duplicates,return=minimal"},
            )

    async def scan(
        self, *, user_id: str | None, page_size: int
    ) -> AsyncIterator[list[FactCacheEntry]]:
        after: FactCacheKey | None = None
        while True:
            params = {
                "select": f"{_KEY},facts",
                "order": "user_id.asc,content_hash.asc,extractor_version.asc",
                "limit": str(page_size),
            }
            if user_id is not None:
                params["user_id"] = f"eq.{user_id}"
            if after is not None:
                params["or"] = _after(after, one_user=user_id is not None)
            rows = await self._http.select(_TABLE, params)
            # Only an empty page ends the scan: a server whose row cap is below `page_size`
            # returns short pages that are not the last.
            if not rows:
                return
            page = [entry_of(row) for row in rows]
            after = page[-1].key
            yield page

    async def delete(self, keys: Sequence[FactCacheKey]) -> int:
        by_group: dict[tuple[str, str], list[str]] = {}
        for key in dict.fromkeys(keys):
            by_group.setdefault((key.user_id, key.extractor_version), []).append(key.content_hash)
        removed = 0
        for (user_id, version), hashes in by_group.items():
            for start in range(0, len(hashes), HASHES_PER_DELETE):
                batch = hashes[start : start + HASHES_PER_DELETE]
                response = await self._http.request(
                    "DELETE",
                    _PATH,
                    table=_TABLE,
                    action="delete",
                    params={
                        "user_id": f"eq.{user_id}",
                        "extractor_version": f"eq.{version}",
                        "content_hash": f"in.{quoted_list(batch)}",
                        "select": "content_hash",
                    },
                    headers={"Prefer": "return=representation"},
                )
                removed += len(response.json())
        return removed
