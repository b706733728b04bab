"""The `Store` methods both stores serve the same way, from a part of their own: the fact cache
(`local_fact_cache.py` / `supabase_fact_cache.py`) and batch mode's records (`local_batches.py` /
`supabase_batches.py`). A store sets `_fact_cache` and `_batches`; these mixins do the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

from app.adapters.fact_cache import PAGE_SIZE
from app.batch_port import BatchState, LLMBatch
from app.domain import Fact
from app.ports import FactCacheEntry, FactCacheKey

__all__ = ["BatchMethods", "FactCacheMethods"]


class _FactCacheRows(Protocol):
    async def get(
        self, *, user_id: str, extractor_version: str, content_hashes: Sequence[str]
    ) -> dict[str, list[Fact]]: ...

    async def put(
        self, *, user_id: str, extractor_version: str, entries: Mapping[str, Sequence[Fact]]
    ) -> None: ...

    def scan(
        self, *, user_id: str | None, page_size: int
    ) -> AsyncIterator[list[FactCacheEntry]]: ...

    async def delete(self, keys: Sequence[FactCacheKey]) -> int: ...


class _BatchRows(Protocol):
    async def record(self, batch: LLMBatch, requests: Mapping[str, Sequence[str]]) -> None: ...

    async def update(
        self,
        batch_id: str,
        *,
        state: BatchState,
        provider_batch_id: str | None,
        counts: Mapping[str, int] | None,
    ) -> None: ...

    async def of_job(self, job_id: str) -> list[LLMBatch]: ...

    async def requests(self, batch_id: str) -> dict[str, list[str]]: ...


class FactCacheMethods:
    _fact_cache: _FactCacheRows

    async def get_cached_facts(
        self, *, user_id: str, extractor_version: str, content_hashes: Sequence[str]
    ) -> dict[str, list[Fact]]:
        return await self._fact_cache.get(
            user_id=user_id, extractor_version=extractor_version, content_hashes=content_hashes
        )

    async def put_cached_facts(
        self, *, user_id: str, extractor_version: str, entries: Mapping[str, Sequence[Fact]]
    ) -> None:
        await self._fact_cache.put(
            user_id=user_id, extractor_version=extractor_version, entries=entries
        )

    def scan_fact_cache(
        self, *, user_id: str | None = None, page_size: int = PAGE_SIZE
    ) -> AsyncIterator[list[FactCacheEntry]]:
        return self._fact_cache.scan(user_id=user_id, page_size=page_size)

    async def delete_fact_cache_entries(self, keys: Sequence[FactCacheKey]) -> int:
        return await self._fact_cache.delete(keys)


class BatchMethods:
    _batches: _BatchRows

    async def record_llm_batch(
        self, batch: LLMBatch, requests: Mapping[str, Sequence[str]]
    ) -> None:
        await self._batches.record(batch, requests)

    async def update_llm_batch(
        self,
        batch_id: str,
        *,
        state: BatchState,
        provider_batch_id: str | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        await self._batches.update(
            batch_id, state=state, provider_batch_id=provider_batch_id, counts=counts
        )

    async def list_llm_batches(self, job_id: str) -> list[LLMBatch]:
        return await self._batches.of_job(job_id)

    async def get_llm_batch_requests(self, batch_id: str) -> dict[str, list[str]]:
        return await self._batches.requests(batch_id)
