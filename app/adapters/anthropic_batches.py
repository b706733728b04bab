"""`MessageBatches` on Anthropic's Message Batches API (`client.messages.batches`).

A request's params are built by the code a realtime call uses (`extraction_params`,
`reduce_params`), and a succeeded result is read by the code that reads a realtime reply
(`check_stop`, then `read_extraction` / `read_reduce`): batch mode asks and understands exactly
what realtime does. Vendor errors are translated as for a task call (`translate_error`); a
batch the API does not know is `LLMBatchNotFound`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anthropic
import structlog
from anthropic.types.messages import MessageBatchIndividualResponse

from app.adapters.anthropic_llm import translate_error
from app.adapters.anthropic_messages import (
    call_of,
    check_stop,
    extraction_params,
    read_extraction,
    read_reduce,
    reduce_params,
)
from app.batch_port import BatchKind, BatchProgress, BatchRequest, BatchResult
from app.errors import LLMBatchNotFound, LLMError, LLMUnavailable
from app.ports import Excerpt, ExtractionRequest

__all__ = ["AnthropicBatches"]

_log = structlog.get_logger(__name__)
# A request error in a batch result that another try may get past (the rest are permanent).
_TRANSIENT_ERRORS = frozenset(
    {"api_error", "overloaded_error", "rate_limit_error", "timeout_error"}
)
_TASK: dict[BatchKind, str] = {"extract": "extract_facts", "reduce": "reduce_facts"}


class AnthropicBatches:
    def __init__(self, client: anthropic.AsyncAnthropic, *, model: str) -> None:
        self._client = client
        self._model = model

    def _translated(self, exc: anthropic.AnthropicError, batch_id: str | None) -> LLMError:
        if isinstance(exc, anthropic.NotFoundError) and batch_id is not None:
            return LLMBatchNotFound(f"Anthropic has no message batch {batch_id} (404)")
        return translate_error(exc, model=self._model)

    async def create(self, requests: Sequence[BatchRequest]) -> str:
        items: list[Any] = [
            {"custom_id": r.custom_id, "params": {"model": self._model, **_params(r)}}
            for r in requests
        ]
        try:
            batch = await self._client.messages.batches.create(requests=items)
        except anthropic.AnthropicError as exc:
            raise self._translated(exc, None) from exc
        _log.info("llm.batch_created", batch_id=batch.id, requests=len(items))
        return batch.id

    async def retrieve(self, batch_id: str) -> BatchProgress:
        try:
            batch = await self._client.messages.batches.retrieve(batch_id)
        except anthropic.AnthropicError as exc:
            raise self._translated(exc, batch_id) from exc
        counts = batch.request_counts.model_dump()
        return BatchProgress(ended=batch.processing_status == "ended", counts=counts)

    async def results(
        self, batch_id: str, *, kind: BatchKind, parts: Mapping[str, int]
    ) -> AsyncIterator[BatchResult]:
        try:
            lines = await self._client.messages.batches.results(batch_id)
            async for line in lines:
                yield self._read(line, kind=kind, parts=parts)
        except anthropic.AnthropicError as exc:
            raise self._translated(exc, batch_id) from exc

    async def cancel(self, batch_id: str) -> None:
        try:
            await self._client.messages.batches.cancel(batch_id)
        except anthropic.BadRequestError:
            return  # it has already ended: nothing to stop
        except anthropic.AnthropicError as exc:
            raise self._translated(exc, batch_id) from exc

    def _read(
        self, line: MessageBatchIndividualResponse, *, kind: BatchKind, parts: Mapping[str, int]
    ) -> BatchResult:
        custom_id, result = line.custom_id, line.result
        if result.type == "succeeded":
            message = result.message
            call = call_of(
                message, task=_TASK[kind], model=self._model, request_id=message.id, batch=True
            )
            try:
                check_stop(message, call)
                if kind == "reduce":
                    value: Any = read_reduce(message, call)
                else:
                    value = read_extraction(message, call, _shape(parts.get(custom_id, 1)))
            except LLMError as exc:
                return BatchResult(custom_id, "succeeded", call=call, error=exc)
            return BatchResult(custom_id, "succeeded", value=value, call=call)
        if result.type == "errored":
            error = result.error.error
            text = f"the batch request errored ({error.type}: {error.message[:200]})"
            if error.type in _TRANSIENT_ERRORS:
                return BatchResult(
                    custom_id, "errored", error=LLMUnavailable(text, reason=error.type)
                )
            return BatchResult(custom_id, "errored", error=LLMError(text))
        return BatchResult(custom_id, result.type)


def _params(request: BatchRequest) -> dict[str, Any]:
    if isinstance(request.request, ExtractionRequest):
        return extraction_params(request.request)
    return reduce_params(request.request)


def _shape(excerpts: int) -> ExtractionRequest:
    """A request of `excerpts` excerpts: all a reply is read against (their count)."""
    blank = Excerpt(chunk_id="", conversation_id="", title=None, date=None, text="")
    return ExtractionRequest((blank,) * max(1, excerpts))
