"""`MessageBatches` in-process: a batch that ends at once, answered by an LLM's own task calls.

The offline provider's batch mode (so `LLM_MODE=batch` runs on the embedded defaults and in fast
tests), and the test fakes'. A batch lives in this process's memory until its results have been
read through once: a process that restarts no longer has it (`LLMBatchNotFound`), which the
pipeline treats as any lost batch — its requests are submitted again. `outcome` may plan a
request's result (errored, expired, canceled) for tests; by default every request succeeds.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from app.batch_port import BatchKind, BatchProgress, BatchRequest, BatchResult, ResultKind
from app.errors import LLMBadOutput, LLMBatchNotFound, LLMError, LLMRefused, LLMUnavailable
from app.ports import ExtractionRequest, ExtractionResult, LLMReply, ReduceRequest

__all__ = ["InstantBatches", "Outcome"]

# A request's planned result: None (answer it), or how it ends without an answer.
Outcome = Callable[[BatchRequest], ResultKind | None]


class _Answers(Protocol):
    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[ExtractionResult]: ...

    async def reduce_facts(self, request: ReduceRequest) -> LLMReply[list[str]]: ...


class InstantBatches:
    def __init__(self, llm: _Answers, *, outcome: Outcome | None = None) -> None:
        self._llm = llm
        self._outcome = outcome
        self._batches: dict[str, list[BatchResult]] = {}
        self.created: list[list[BatchRequest]] = []  # what was submitted, batch by batch

    async def create(self, requests: Sequence[BatchRequest]) -> str:
        batch_id = f"msgbatch_local_{uuid.uuid4().hex[:20]}"
        self.created.append(list(requests))
        self._batches[batch_id] = [await self._answer(r) for r in requests]
        return batch_id

    async def _answer(self, item: BatchRequest) -> BatchResult:
        planned = self._outcome(item) if self._outcome is not None else None
        if planned == "errored":
            error = LLMUnavailable("the batch request errored (api_error)", reason="api_error")
            return BatchResult(item.custom_id, "errored", error=error)
        if planned in ("expired", "canceled"):
            return BatchResult(item.custom_id, planned)
        reply: LLMReply[Any]
        try:
            if isinstance(item.request, ExtractionRequest):
                reply = await self._llm.extract_facts(item.request)
            else:
                reply = await self._llm.reduce_facts(item.request)
        except (LLMBadOutput, LLMRefused) as exc:
            # A reply was made, and would be billed, but cannot be used (as a cut or refused
            # message in a real batch).
            return BatchResult(item.custom_id, "succeeded", error=exc)
        except LLMError as exc:
            return BatchResult(item.custom_id, "errored", error=exc)
        call = replace(reply.call, batch=True)
        return BatchResult(item.custom_id, "succeeded", value=reply.value, call=call)

    def _get(self, batch_id: str) -> list[BatchResult]:
        found = self._batches.get(batch_id)
        if found is None:
            raise LLMBatchNotFound(f"this process has no message batch {batch_id}")
        return found

    async def retrieve(self, batch_id: str) -> BatchProgress:
        results = self._get(batch_id)
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        for result in results:
            counts[result.kind] += 1
        return BatchProgress(ended=True, counts=counts)

    async def results(
        self, batch_id: str, *, kind: BatchKind, parts: Mapping[str, int]
    ) -> AsyncIterator[BatchResult]:
        for result in self._get(batch_id):
            yield result
        self._batches.pop(batch_id, None)  # read through: nothing more to keep

    async def cancel(self, batch_id: str) -> None:
        self._get(batch_id)  # ended at once: nothing to stop
