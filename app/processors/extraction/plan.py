"""The extraction requests a pass would make over an export with an empty fact cache, packed
exactly as `extract_facts` packs them — for `inspect`'s estimate and the cost benchmarks.

Chunks with none of the user's words make no request; identical chunks (the same content hash)
are asked about once; the user's signals go last, in their batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from app.config import Settings
from app.domain import Conversation, UserSignal
from app.processors import prompts
from app.processors.extraction.packing import Packer, Unit, chunk_unit, signal_unit
from app.processors.extraction.text import build_extraction_text, signal_batches
from app.processors.reading.chunking import chunk_as_configured
from app.processors.reading.text import estimate_tokens

__all__ = ["fixed_request_tokens", "plan_requests"]


def fixed_request_tokens() -> int:
    """What every extraction request carries besides its excerpts: system prompt and tool."""
    tool = prompts.tool_for("extract_facts")
    assert tool is not None
    return estimate_tokens(prompts.EXTRACT_SYSTEM) + estimate_tokens(json.dumps(tool.param()))


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
