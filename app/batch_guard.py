"""The provider breaker and the metrics over the Message Batches API, as over task calls.

`GuardedBatches`: creating, polling, reading and cancelling a batch can meet a 429, a 529 or a
5xx like any call; each waits while the breaker is open, and one that fails because the provider
is unavailable opens it and is made again once it closes (`GuardedLLM` does the same for task
calls). A results stream broken off midway starts again once the provider answers, skipping the
results already handed over. `MeteredBatches` counts each billed result as `MeteredLLM` counts a
call, at the batch price.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from app.batch_port import BatchKind, BatchProgress, BatchRequest, BatchResult, MessageBatches
from app.errors import LLMUnavailable
from app.pricing import ModelPrice, call_cost_usd

if TYPE_CHECKING:
    from app.breaker import ProviderBreaker
    from app.metrics import Metrics

__all__ = ["GuardedBatches", "MeteredBatches"]

T = TypeVar("T")


class GuardedBatches:
    def __init__(self, inner: MessageBatches, breaker: ProviderBreaker) -> None:
        self.inner = inner
        self.breaker = breaker

    async def create(self, requests: Sequence[BatchRequest]) -> str:
        return await self.breaker.guard(lambda: self.inner.create(requests))

    async def retrieve(self, batch_id: str) -> BatchProgress:
        return await self.breaker.guard(lambda: self.inner.retrieve(batch_id))

    async def cancel(self, batch_id: str) -> None:
        await self.breaker.guard(lambda: self.inner.cancel(batch_id))

    async def results(
        self, batch_id: str, *, kind: BatchKind, parts: Mapping[str, int]
    ) -> AsyncIterator[BatchResult]:
        seen: set[str] = set()
        while True:
            await self.breaker.wait_closed()
            try:
                async for result in self.inner.results(batch_id, kind=kind, parts=parts):
                    if result.custom_id in seen:
                        continue  # handed over before the stream broke off
                    seen.add(result.custom_id)
                    yield result
                return
            except LLMUnavailable as exc:
                self.breaker.record_failure(exc)


class MeteredBatches:
    def __init__(self, inner: MessageBatches, *, price: ModelPrice, metrics: Metrics) -> None:
        self.inner = inner
        self._price = price
        self._metrics = metrics

    async def create(self, requests: Sequence[BatchRequest]) -> str:
        return await self.inner.create(requests)

    async def retrieve(self, batch_id: str) -> BatchProgress:
        return await self.inner.retrieve(batch_id)

    async def cancel(self, batch_id: str) -> None:
        await self.inner.cancel(batch_id)

    async def results(
        self, batch_id: str, *, kind: BatchKind, parts: Mapping[str, int]
    ) -> AsyncIterator[BatchResult]:
        metrics = self._metrics
        async for result in self.inner.results(batch_id, kind=kind, parts=parts):
            if result.call is not None:
                task, usage = result.call.task, result.call.usage
                outcome = "ok" if result.error is None else result.error.code
                metrics.llm_calls.labels(task=task, outcome=outcome).inc()
                metrics.llm_tokens.labels(kind="input").inc(usage.input_tokens)
                metrics.llm_tokens.labels(kind="output").inc(usage.output_tokens)
                metrics.llm_usd.inc(call_cost_usd(result.call, self._price))
            yield result
