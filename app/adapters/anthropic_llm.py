"""`LLM` on the Anthropic Messages API: one `AsyncAnthropic` per process, the SDK's retries only.

Structured replies come through a forced, strict tool (`tool_choice={"type": "tool", ...}`) and are
validated with pydantic; MEMORY is plain markdown. `stop_reason` is checked before anything is read:
a reply cut at `max_tokens` or a refusal is never parsed. Vendor errors are translated here into
`app.errors` so the pipeline decides on our terms (see docs/LLM.md for the table); a 429 for a
request larger than the organisation's per-minute limit is not retried and is `LLMRequestTooLarge`
(anthropic_limits.py).
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import anthropic
import structlog
from anthropic.types import Message
from pydantic import BaseModel

from app.adapters.anthropic_limits import Overrun, RequestSize, SkipHopelessRetries, overrun
from app.adapters.anthropic_messages import (
    MAX_TOKENS,
    call_of,
    check_stop,
    extraction_max_tokens,
    extraction_params,
    read_extraction,
    read_reduce,
    read_tool,
    reduce_params,
    tool_params,
)
from app.config import Settings
from app.errors import LLMBadOutput, LLMError, LLMFatal, LLMRequestTooLarge, LLMUnavailable
from app.ports import (
    ExtractionRequest,
    ExtractionResult,
    LLMCall,
    LLMReply,
    MemoryRequest,
    MessageBatches,
    ReduceRequest,
    SectionsRequest,
)
from app.processors import prompts
from app.sections import SectionSet

__all__ = ["MAX_TOKENS", "AnthropicLLM", "extraction_max_tokens", "translate_error"]

_M = TypeVar("_M", bound=BaseModel)
_log = structlog.get_logger(__name__)

_BILLING_HINTS = ("credit balance", "billing", "spend limit", "purchase credits")
_SPEND_LIMIT_CODES = frozenset(
    {"contract_spend_limit_reached", "enforced_spend_limit_reached", "organization_on_hold"}
)


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    """The provider's own `retry-after` hint, in seconds (None when absent or unreadable)."""
    raw = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _unavailable(exc: anthropic.APIStatusError) -> tuple[str, str]:
    """Words for a transient status: (reason, what to do)."""
    if isinstance(exc, anthropic.RateLimitError):
        return "rate limited", "lower FACT_EXTRACTION_CONCURRENCY or raise the account's limits"
    if exc.status_code == 529:
        return "overloaded", "Anthropic is overloaded; it usually passes within minutes"
    if exc.status_code in (408, 504):
        return "timed out", "Anthropic did not answer in time"
    if exc.status_code == 409:
        return "conflict", "Anthropic asked for the request to be retried"
    return "server error", "Anthropic had an internal error"


def _too_large(over: Overrun, rid: str) -> LLMRequestTooLarge:
    if over.kind == "output":
        return LLMRequestTooLarge(
            f"the request reserves max_tokens={over.need:,} output tokens, more than the "
            f"organisation's limit of {over.limit:,} output tokens a minute, so Anthropic refuses "
            f"it every time{rid}: raise the account's rate limits (its tier)"
        )
    if over.larger_than_estimated:
        return LLMRequestTooLarge(
            f"Anthropic refused the request (~{over.need:,} input tokens by our estimate) with "
            f"the organisation's {over.limit:,} input tokens a minute unused: it is larger than "
            f"estimated and never fits{rid}: lower ANTHROPIC_INPUT_TOKENS_PER_MINUTE to leave "
            "requests more room, or raise the account's rate limits (its tier)"
        )
    return LLMRequestTooLarge(
        f"the request (~{over.need:,} input tokens) is larger than the organisation's limit of "
        f"{over.limit:,} input tokens a minute, so Anthropic refuses it every time{rid}: set "
        f"ANTHROPIC_INPUT_TOKENS_PER_MINUTE to {over.limit:,} so requests are sized to fit, or "
        "raise the account's rate limits (its tier)"
    )


def translate_error(
    exc: anthropic.AnthropicError, *, model: str, request: RequestSize | None = None
) -> LLMError:
    """Our error for a vendor error that outlasted the SDK's retries, named for what happened
    (cannot connect, timed out, rate limited, overloaded, rejected key, no credit…) and saying
    what to do. With the `request`'s size, a 429 it can never get past (larger than a limit the
    response states) is `LLMRequestTooLarge`, not the provider being unavailable."""
    if isinstance(exc, anthropic.APIStatusError):
        rid = f" (request id {exc.request_id})" if exc.request_id else ""
        detail = (exc.api_message or "").strip()[:200]
        if isinstance(exc, anthropic.AuthenticationError):
            return LLMFatal(
                "Anthropic rejected ANTHROPIC_API_KEY (401): set a valid key", reason="rejected key"
            )
        if isinstance(exc, anthropic.PaymentRequiredError) or exc.error_code in _SPEND_LIMIT_CODES:
            return LLMFatal(
                f"Anthropic refused to bill the request ({exc.status_code}: {detail}){rid}: add "
                "credit or raise the spend limit in the Anthropic console",
                reason="no credit",
            )
        if isinstance(exc, anthropic.BadRequestError) and any(
            hint in detail.lower() for hint in _BILLING_HINTS
        ):
            return LLMFatal(
                f"Anthropic credit balance is too low (400){rid}: add credit in the "
                "Anthropic console",
                reason="no credit",
            )
        if isinstance(exc, anthropic.PermissionDeniedError):
            return LLMFatal(
                f"ANTHROPIC_API_KEY may not use model {model!r} (403: {detail}){rid}: use a key "
                "with access to it or change ANTHROPIC_MODEL",
                reason="model not allowed",
            )
        if isinstance(exc, anthropic.NotFoundError):
            return LLMFatal(
                f"model {model!r} was not found (404){rid}: set ANTHROPIC_MODEL to a model your "
                "key can use, e.g. claude-haiku-4-5",
                reason="unknown model",
            )
        if isinstance(exc, anthropic.RateLimitError) and request is not None:
            over = overrun(request, exc.response.headers, exc.api_message or "")
            if over is not None:
                return _too_large(over, rid)
        if isinstance(exc, anthropic.RateLimitError | anthropic.InternalServerError) or (
            exc.status_code in (408, 409)
        ):
            reason, advice = _unavailable(exc)
            return LLMUnavailable(
                f"Anthropic {reason} ({exc.status_code}) after the SDK's retries{rid}: {advice}",
                reason=reason,
                retry_after=_retry_after(exc),
            )
        if isinstance(exc, anthropic.ContentTooLargeError):
            return LLMError(f"the request was too large for the API (413){rid}: send less text")
        return LLMError(f"Anthropic rejected the request ({exc.status_code}: {detail}){rid}")
    if isinstance(exc, anthropic.APITimeoutError):
        return LLMUnavailable(
            "Anthropic timed out: no answer within ANTHROPIC_TIMEOUT_SECONDS after the SDK's "
            "retries; it is waited out, or raise the timeout",
            reason="timed out",
        )
    if isinstance(exc, anthropic.APIConnectionError):
        return LLMUnavailable(
            "cannot connect to the Anthropic API (the connection failed after the SDK's "
            "retries): check the network or ANTHROPIC_BASE_URL",
            reason="cannot connect",
        )
    if isinstance(exc, anthropic.APIResponseValidationError):
        return LLMBadOutput(f"Anthropic's reply was not a valid Messages response: {exc.message}")
    return LLMError(f"Anthropic client error: {type(exc).__name__}")


class AnthropicLLM:
    """Implements `app.ports.LLM`. Build it once per process with `from_settings`."""

    def __init__(self, client: anthropic.AsyncAnthropic, *, model: str) -> None:
        # A 429 for a request that can never fit the per-minute limits is not retried.
        self._client = client.with_middleware(SkipHopelessRetries())
        self._model = model

    @classmethod
    def from_settings(cls, settings: Settings) -> AnthropicLLM:
        if settings.anthropic_api_key is None:
            raise LLMFatal(
                "ANTHROPIC_API_KEY is not set: set it, or use LLM_BACKEND=offline",
                reason="not configured",
            )
        client = anthropic.AsyncAnthropic(
            api_key=settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            max_retries=settings.anthropic_max_retries,
            timeout=settings.anthropic_timeout_seconds,
        )
        return cls(client, model=settings.anthropic_model)

    @property
    def provider(self) -> str:
        return "anthropic"

    @property
    def model(self) -> str:
        return self._model

    async def aclose(self) -> None:
        await self._client.close()

    async def probe(self) -> None:
        """Is the API answering? One tiny request (≈ 10 tokens), no SDK retries: the breaker
        that calls it paces the probes itself. Raises what a task call would raise."""
        try:
            await self._client.with_options(max_retries=0).messages.create(
                model=self._model,
                max_tokens=1,
                messages=[{"role": "user", "content": "ping"}],
            )
        except anthropic.AnthropicError as exc:
            raise translate_error(exc, model=self._model) from exc

    def batches(self) -> MessageBatches:
        """The Message Batches API on the same client (app/adapters/anthropic_batches.py)."""
        from app.adapters.anthropic_batches import AnthropicBatches

        return AnthropicBatches(self._client, model=self._model)

    # --- the four tasks -----------------------------------------------------------------------

    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[ExtractionResult]:
        message, call = await self._send(task="extract_facts", params=extraction_params(request))
        return LLMReply(value=read_extraction(message, call, request), call=call)

    async def reduce_facts(self, request: ReduceRequest) -> LLMReply[list[str]]:
        message, call = await self._send(task="reduce_facts", params=reduce_params(request))
        return LLMReply(value=read_reduce(message, call), call=call)

    async def write_memory(self, request: MemoryRequest) -> LLMReply[str]:
        message, call = await self._send(
            task="write_memory",
            params={
                "system": prompts.MEMORY_SYSTEM,
                "messages": [{"role": "user", "content": prompts.memory_message(request)}],
                "max_tokens": MAX_TOKENS["write_memory"],
            },
        )
        text = "".join(block.text for block in message.content if block.type == "text").strip()
        return LLMReply(value=text, call=call)

    async def write_sections(self, request: SectionsRequest) -> LLMReply[dict[str, Any]]:
        params = tool_params(
            "write_sections",
            system=prompts.SECTIONS_SYSTEM,
            user=prompts.sections_message(request),
            max_tokens=MAX_TOKENS["write_sections"],
        )
        message, call = await self._send(task="write_sections", params=params)
        return LLMReply(value=read_tool(message, call, SectionSet).model_dump(), call=call)

    # --- one call -----------------------------------------------------------------------------

    async def _send(self, *, task: str, params: dict[str, Any]) -> tuple[Message, LLMCall]:
        """One request through the SDK (its retries included); stop_reason checked first."""
        started = time.perf_counter()
        try:
            raw = await self._client.messages.with_raw_response.create(model=self._model, **params)
        except anthropic.AnthropicError as exc:
            error = translate_error(exc, model=self._model, request=RequestSize.of(params))
            _log.warning(
                "llm.call_failed",
                task=task,
                model=self._model,
                error=type(error).__name__,
                status=getattr(exc, "status_code", None),
                request_id=getattr(exc, "request_id", None),
                duration_ms=round((time.perf_counter() - started) * 1000),
            )
            raise error from exc
        try:
            message = await raw.parse()
        except (ValueError, anthropic.AnthropicError) as exc:  # a 200 whose body is not a Message
            _log.warning(
                "llm.call_failed",
                task=task,
                model=self._model,
                error="LLMBadOutput",
                request_id=raw.request_id,
            )
            raise LLMBadOutput(
                f"{task}: Anthropic's reply body was not a valid message (request id "
                f"{raw.request_id})"
            ) from exc
        call = call_of(
            message,
            task=task,
            model=self._model,
            request_id=raw.request_id,
            retries=raw.retries_taken,
            duration_ms=round((time.perf_counter() - started) * 1000),
        )
        _log.info(
            "llm.call",
            task=task,
            model=call.model,
            stop_reason=message.stop_reason,
            input_tokens=call.usage.input_tokens,
            output_tokens=call.usage.output_tokens,
            cache_creation_tokens=call.usage.cache_creation_input_tokens,
            cache_read_tokens=call.usage.cache_read_input_tokens,
            retries=call.retries,
            duration_ms=call.duration_ms,
            request_id=call.request_id,
        )
        check_stop(message, call)
        return message, call
