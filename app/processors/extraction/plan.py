"""The extraction requests a pass would make over an export with an empty fact cache, packed
exactly as `extract_facts` packs them — for `inspect`'s estimate and the cost benchmarks.

Chunks with none of the user's words make no request; identical chunks (the same content hash)
are asked about once; the user's signals go last, in their batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from app.config import Settings
from app.domain import Conversation, UserSignal
from app.ports import ExtractionRequest, ExtractionResult
from app.processors import prompts
from app.processors.extraction.packing import Packer, Unit, chunk_unit, request_of, signal_unit
from app.processors.extraction.text import build_extraction_text, signal_batches
from app.processors.reading.chunking import chunk_as_configured
from app.processors.reading.text import estimate_tokens

__all__ = [
    "RequestEstimate",
    "estimate_extraction",
    "fixed_request_tokens",
    "offline_answers",
    "plan_requests",
]


def _extract_tool() -> prompts.ToolSpec:
    tool = prompts.tool_for("extract_facts")
    assert tool is not None
    return tool


def fixed_request_tokens() -> int:
    """What every extraction request carries besides its excerpts: system prompt and tool."""
    tool_tokens = estimate_tokens(json.dumps(_extract_tool().param()))
    return estimate_tokens(prompts.EXTRACT_SYSTEM) + tool_tokens


def plan_requests(
    conversations: Iterable[Conversation],
    *,
    settings: Settings,
    user_id: str,
    counts: dict[str, int],
) -> Iterator[list[Unit]]:
    """The packed requests, in order. `counts` gets `chunks` and `skipped` (no user words)."""
    packer = Packer(budget_tokens=settings.extraction_request_tokens)
    seen: set[str] = set()
    signals: list[UserSignal] = []
    counts.setdefault("chunks", 0)
    counts.setdefault("skipped", 0)
    for conversation in conversations:
        signals.extend(conversation.signals)
        for chunk in chunk_as_configured(conversation, user_id=user_id, settings=settings):
            counts["chunks"] += 1
            text = build_extraction_text(chunk)
            if not text:
                counts["skipped"] += 1
                continue
            if chunk.content_hash in seen:
                continue
            seen.add(chunk.content_hash)
            if full := packer.add(chunk_unit(chunk, text)):
                yield full
    for batch in signal_batches(signals):
        if full := packer.add(signal_unit(batch)):
            yield full
    if last := packer.flush():
        yield last


@dataclass
class RequestEstimate:
    """What the extraction of an export would send and get back, request by request."""

    chunks: int = 0
    skipped: int = 0  # chunks with none of the user's words: no excerpt
    requests: int = 0
    excerpts: int = 0
    excerpt_tokens: int = 0  # the excerpts' own text
    input_tokens: int = 0  # whole requests: system prompt, tool, excerpts and their tags
    facts: int = 0
    output_tokens: int = 0  # the replies: the record_facts JSON with those facts
    reserved_output_tokens: int = 0  # Σ max_tokens: what counts against the output limit


FactCounter = Callable[[ExtractionRequest], ExtractionResult]


def estimate_extraction(
    conversations: Iterable[Conversation],
    *,
    settings: Settings,
    user_id: str,
    answer: FactCounter,
) -> RequestEstimate:
    """Every request `plan_requests` makes, priced: input by our estimator, output as the JSON
    reply carrying the facts `answer` finds in it (the offline rules, for `inspect`: a floor, a
    model finds more; the same rules answer in the Messages-API simulator)."""
    from app.adapters.anthropic_llm import extraction_max_tokens

    fixed = fixed_request_tokens()
    counts: dict[str, int] = {}
    estimate = RequestEstimate()
    for pack in plan_requests(conversations, settings=settings, user_id=user_id, counts=counts):
        request = request_of(pack)
        result = answer(request)
        estimate.requests += 1
        estimate.excerpts += len(pack)
        estimate.excerpt_tokens += sum(
            estimate_tokens(u.excerpt.text or "".join(s.text for s in u.excerpt.signals))
            for u in pack
        )
        estimate.input_tokens += fixed + estimate_tokens(prompts.extraction_message(request))
        estimate.facts += sum(len(f or ()) for f in result.facts)
        estimate.output_tokens += _reply_tokens(result)
        estimate.reserved_output_tokens += extraction_max_tokens(request)
    estimate.chunks, estimate.skipped = counts["chunks"], counts["skipped"]
    return estimate


def _reply_tokens(result: ExtractionResult) -> int:
    """The reply as the API returns it: the tool input inside its `tool_use` block, whose
    framing (type, id, name: ~22 tokens) weighs ~30 % of a p3 reply that names few facts."""
    block = {
        "type": "tool_use",
        "id": "toolu_" + "0" * 20,
        "name": _extract_tool().name,
        "input": prompts.extraction_tool_input(result),
    }
    return estimate_tokens(json.dumps([block], ensure_ascii=False))


def offline_answers() -> FactCounter:
    """The offline rules' answer to a request: what `inspect` assumes a model finds (a floor)."""
    from app.adapters.offline_llm import answer_extraction

    return answer_extraction
