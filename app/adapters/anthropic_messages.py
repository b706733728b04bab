"""Anthropic requests and replies, shared by the Messages API (`AnthropicLLM`) and the Message
Batches API (`AnthropicBatches`): a batch request's params are built by the very code a realtime
call uses, and a succeeded batch result is read by the very code that reads a realtime reply.

Structured replies come through a forced, strict tool and are validated with pydantic;
`stop_reason` is checked before anything is read (`check_stop`).
"""

from __future__ import annotations

from typing import Any, TypeVar

import structlog
from anthropic.types import Message
from pydantic import BaseModel, ValidationError

from app.errors import LLMBadOutput, LLMRefused
from app.ports import (
    Excerpt,
    ExtractionRequest,
    ExtractionResult,
    LLMCall,
    LLMUsage,
    ReduceRequest,
)
from app.processors import prompts
from app.processors.reading.text import estimate_tokens

__all__ = [
    "MAX_TOKENS",
    "call_of",
    "check_stop",
    "extraction_max_tokens",
    "extraction_params",
    "read_extraction",
    "read_reduce",
    "read_tool",
    "reduce_params",
    "tool_params",
]

_M = TypeVar("_M", bound=BaseModel)
_log = structlog.get_logger(__name__)

# Output tokens are reserved from max_tokens against the per-minute output limit when a request
# starts (FACTS.md), so each task asks for what its reply can need, not more. See docs/LLM.md.
MAX_TOKENS: dict[str, int] = {
    "write_memory": 8_192,  # one call per job over ≤ FACT_TOKEN_BUDGET of facts
    "write_sections": 4_096,  # five sections, ~30 short fields
}
# A packed extraction reply: the framing, then per excerpt an id (a token or two under no_facts)
# or its facts (~22 tokens each), which scale with what the excerpt says: half a token of reply a
# token of excerpt, at most 200 an excerpt (~8 facts), and room for its cap of facts a batch of
# notes. A reply cut at the limit is split and asked again in halves.
_EXTRACT_BASE_TOKENS = 320
_EXTRACT_EXCERPT_TOKENS = 16
_EXTRACT_EXCERPT_MAX_TOKENS = 200
_EXTRACT_TOKENS_PER_FACT = 24
_EXTRACT_MAX_TOKENS = 8_192
_REDUCE_BASE_TOKENS = 256
_REDUCE_TOKENS_PER_FACT = 64
_REDUCE_MAX_TOKENS = 16_384


def _excerpt_reply_tokens(excerpt: Excerpt) -> int:
    if excerpt.signals:
        return _EXTRACT_EXCERPT_TOKENS + _EXTRACT_TOKENS_PER_FACT * prompts.facts_cap(excerpt)
    said = _EXTRACT_EXCERPT_TOKENS + estimate_tokens(excerpt.text) // 2
    return min(_EXTRACT_EXCERPT_MAX_TOKENS, said)


def extraction_max_tokens(request: ExtractionRequest) -> int:
    """`max_tokens` for a packed extraction request: what its excerpts' replies can need."""
    wanted = _EXTRACT_BASE_TOKENS + sum(_excerpt_reply_tokens(e) for e in request.excerpts)
    return min(_EXTRACT_MAX_TOKENS, wanted)


def _reduce_max_tokens(target_count: int) -> int:
    return min(_REDUCE_MAX_TOKENS, _REDUCE_BASE_TOKENS + _REDUCE_TOKENS_PER_FACT * target_count)


# --- requests and replies, shared by the Messages API and the Message Batches API ------------


def tool_params(task: str, *, system: str, user: str, max_tokens: int) -> dict[str, Any]:
    """A request forcing the task's strict tool (without `model`: the sender adds it)."""
    tool = prompts.tool_for(task)
    assert tool is not None, task
    return {
        "system": system,
        "messages": [{"role": "user", "content": user}],
        "max_tokens": max_tokens,
        "tools": [tool.param()],
        "tool_choice": {"type": "tool", "name": tool.name},
    }


def extraction_params(request: ExtractionRequest) -> dict[str, Any]:
    return tool_params(
        "extract_facts",
        system=prompts.EXTRACT_SYSTEM,
        user=prompts.extraction_message(request),
        max_tokens=extraction_max_tokens(request),
    )


def reduce_params(request: ReduceRequest) -> dict[str, Any]:
    return tool_params(
        "reduce_facts",
        system=prompts.REDUCE_SYSTEM,
        user=prompts.reduce_message(request),
        max_tokens=_reduce_max_tokens(request.target_count),
    )


def call_of(
    message: Message,
    *,
    task: str,
    model: str,
    request_id: str | None,
    retries: int = 0,
    duration_ms: int = 0,
    batch: bool = False,
) -> LLMCall:
    """What one reply cost, from its usage."""
    usage = message.usage
    return LLMCall(
        task=task,
        model=message.model or model,
        usage=LLMUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
        ),
        request_id=request_id,
        retries=retries,
        duration_ms=duration_ms,
        batch=batch,
    )


def read_tool(message: Message, call: LLMCall, reply_model: type[_M]) -> _M:
    """The forced tool's input, validated; `LLMBadOutput` when there is none or it does not fit."""
    tool = prompts.tool_for(call.task)
    assert tool is not None, call.task
    block = next((b for b in message.content if b.type == "tool_use" and b.name == tool.name), None)
    if block is None:
        raise LLMBadOutput(
            f"{call.task}: the reply did not call {tool.name} (request id {call.request_id})"
        )
    try:
        return reply_model.model_validate(block.input)
    except ValidationError as exc:
        raise LLMBadOutput(
            f"{call.task}: the reply did not match the {tool.name} schema "
            f"({exc.error_count()} errors; request id {call.request_id})"
        ) from exc


def read_extraction(
    message: Message, call: LLMCall, request: ExtractionRequest
) -> ExtractionResult:
    parsed = read_tool(message, call, prompts.ExtractedFacts)
    result = prompts.parse_extraction_reply(parsed, excerpts=len(request.excerpts))
    if result.unknown:
        _log.warning("llm.reply_unknown_excerpts", unknown=result.unknown)
    return result


def read_reduce(message: Message, call: LLMCall) -> list[str]:
    return read_tool(message, call, prompts.ReducedFacts).facts


def check_stop(message: Message, call: LLMCall) -> None:
    reason = message.stop_reason
    if reason == "max_tokens":
        raise LLMBadOutput(
            f"{call.task}: the reply was truncated at max_tokens "
            f"({call.usage.output_tokens} output tokens; request id {call.request_id})"
        )
    if reason == "refusal":
        raise LLMRefused(
            f"{call.task}: the model declined this input (request id {call.request_id}); "
            "retrying the same input will not help"
        )
    if reason == "model_context_window_exceeded":
        raise LLMBadOutput(
            f"{call.task}: the prompt filled the model's context window (request id "
            f"{call.request_id}): send less text"
        )
