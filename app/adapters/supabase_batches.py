"""A job's Message Batches in the Supabase store: `llm_batches` and `llm_batch_requests`
(supabase/migrations/20261215000000_llm_batches.sql) over PostgREST.

Writes that must be whole go through the SQL functions (a batch with its requests; a state
change with the removal of the request rows once read); reads are plain selects, paged by key
under PostgREST's silent 1,000-row cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.adapters.postgrest import SupabaseHttp
from app.adapters.rows import batch_from_row
from app.batch_port import BatchState, LLMBatch
from app.errors import StoreError

__all__ = ["SupabaseBatches"]

_PAGE = 500


class SupabaseBatches:
    def __init__(self, http: SupabaseHttp) -> None:
        self._http = http

    async def record(self, batch: LLMBatch, requests: Mapping[str, Sequence[str]]) -> None:
        await self._http.rpc(
            "record_llm_batch",
            {
                "p_id": batch.id,
                "p_job_id": batch.job_id,
                "p_kind": batch.kind,
                "p_request_count": batch.request_count,
                "p_requests": [
                    {"custom_id": cid, "content_hashes": list(keys)}
                    for cid, keys in requests.items()
                ],
            },
        )

    async def update(
        self,
        batch_id: str,
        *,
        state: BatchState,
        provider_batch_id: str | None,
        counts: Mapping[str, int] | None,
    ) -> None:
        found = await self._http.rpc(
            "update_llm_batch",
            {
                "p_id": batch_id,
                "p_state": state,
                "p_provider_batch_id": provider_batch_id,
                "p_counts": None if counts is None else dict(counts),
            },
        )
        if found is not True:
            raise StoreError(f"no llm_batches row {batch_id}", table="llm_batches")

    async def of_job(self, job_id: str) -> list[LLMBatch]:
        rows = await self._http.select(
            "llm_batches",
            {"job_id": f"eq.{job_id}", "select": "*", "order": "created_at.asc,id.asc"},
        )
        return [batch_from_row(row) for row in rows]

    async def requests(self, batch_id: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        after: str | None = None
        while True:
            params = {
                "batch_id": f"eq.{batch_id}",
                "select": "custom_id,content_hashes",
                "order": "custom_id.asc",
                "limit": str(_PAGE),
            }
            if after is not None:
                # custom_ids are [A-Za-z0-9_-]: nothing in them needs quoting.
                params["custom_id"] = f"gt.{after}"
            rows = await self._http.select("llm_batch_requests", params)
            if not rows:  # only an empty page ends it: a lower server cap gives short pages
                return found
            for row in rows:
                found[row["custom_id"]] = [str(k) for k in row["content_hashes"]]
            after = rows[-1]["custom_id"]
