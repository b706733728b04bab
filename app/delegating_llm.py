"""`DelegatingLLM`: the base of the decorators the lifespan stacks around the LLM it built —
`MeteredLLM` (app/metrics.py) counts each call, `GuardedLLM` (app/breaker.py) waits out the
provider's outages. Each task call goes through `_call(task, call)`; a decorator overrides that,
and whatever else it does differently, and delegates the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app.ports import (
    LLM,
    ExtractionRequest,
    ExtractionResult,
    LLMReply,
    MemoryRequest,
    MessageBatches,
    ReduceRequest,
    SectionsRequest,
)

__all__ = ["DelegatingLLM"]

T = TypeVar("T")


class DelegatingLLM:
    """Implements `LLM` by handing every call to `inner`."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner

    @property
    def provider(self) -> str:
        return self.inner.provider

    @property
    def model(self) -> str:
        return self.inner.model

    async def _call(self, task: str, call: Callable[[], Awaitable[LLMReply[T]]]) -> LLMReply[T]:
        """Make one task call (`task` is its name, `extract_facts`…); the decorators' hook."""
        return await call()

    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[ExtractionResult]:
        return await self._call("extract_facts", lambda: self.inner.extract_facts(request))

    async def reduce_facts(self, request: ReduceRequest) -> LLMReply[list[str]]:
        return await self._call("reduce_facts", lambda: self.inner.reduce_facts(request))

    async def write_memory(self, request: MemoryRequest) -> LLMReply[str]:
        return await self._call("write_memory", lambda: self.inner.write_memory(request))

    async def write_sections(self, request: SectionsRequest) -> LLMReply[dict[str, Any]]:
        return await self._call("write_sections", lambda: self.inner.write_sections(request))

    def batches(self) -> MessageBatches | None:
        return self.inner.batches()

    async def probe(self) -> None:
        await self.inner.probe()

    async def aclose(self) -> None:
        await self.inner.aclose()
