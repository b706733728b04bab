"""`python -m app inspect <export>`: what an import would do and roughly cost, without any LLM call.

The cost is an estimate at the configured model's prices (`app.pricing.price_for`):

- extraction: one call per chunk, input = the chunk's estimated tokens + `EXTRACTION_PROMPT_TOKENS`
  (instructions and schema sent with every call), output = `EXTRACTION_OUTPUT_TOKENS` per chunk;
- MEMORY: one call over the consolidated facts (at most `fact_token_budget` tokens, and no more
  than extraction wrote);
- v2: one call over the sampled conversations plus MEMORY.

Token counts come from `estimate_tokens` (UTF-8 bytes / 4), not from the model's tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import Settings
from app.pricing import price_for
from app.processors.reading.chunking import chunk_as_configured, estimate_tokens
from app.processors.reading.export_reader import ExportReader
from app.processors.reading.ingest_stats import IngestStats
from app.processors.reading.v2_sample import V2Sampler

__all__ = [
    "EXTRACTION_OUTPUT_TOKENS",
    "EXTRACTION_PROMPT_TOKENS",
    "MEMORY_OUTPUT_TOKENS",
    "V2_OUTPUT_TOKENS",
    "inspect_export",
]

EXTRACTION_PROMPT_TOKENS = 900
EXTRACTION_OUTPUT_TOKENS = 250
MEMORY_OUTPUT_TOKENS = 4_000
V2_OUTPUT_TOKENS = 3_000
# Placeholder user id: chunk ids differ per user but counts and hashes do not.
_INSPECT_USER = "00000000-0000-0000-0000-000000000000"


def inspect_export(path: Path, *, settings: Settings) -> dict[str, Any]:
    """A JSON-ready summary of the export at `path`. Raises `BadExport` as an import would."""
    reader = ExportReader(path, settings=settings)
    stats = IngestStats()
    sampler = V2Sampler(settings.v2_sample_size)
    for conversation in reader:
        stats.add_conversation(conversation)
        sampler.offer(conversation)
        stats.add_chunks(
            chunk_as_configured(conversation, user_id=_INSPECT_USER, settings=settings)
        )
    price = price_for(settings)
    extraction_in = stats.estimated_tokens + stats.chunks * EXTRACTION_PROMPT_TOKENS
    extraction_out = stats.chunks * EXTRACTION_OUTPUT_TOKENS
    # MEMORY reads the consolidated facts: no more than extraction wrote, nor than the budget.
    memory_in = min(settings.fact_token_budget, extraction_out)
    v2_in = estimate_tokens(sampler.render(limit=settings.v2_sample_size)) + MEMORY_OUTPUT_TOKENS
    total_in = extraction_in + memory_in + v2_in
    total_out = extraction_out + MEMORY_OUTPUT_TOKENS + V2_OUTPUT_TOKENS
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "container": reader.container,
        "format": reader.format,
        "conversations": stats.conversations,
        "conversations_skipped": dict(reader.skipped),
        "messages": stats.messages,
        "messages_by_role": dict(stats.messages_by_role),
        "user_signals": dict(stats.signals),
        "chunks": stats.chunks,
        "chunk_target_tokens": settings.chunk_target_tokens,
        "estimated_input_tokens": stats.estimated_tokens,
        "v2_sample_conversations": len(sampler),
        "model": settings.anthropic_model,
        "estimated_llm_calls": stats.chunks + 2,
        "estimated_llm_input_tokens": total_in,
        "estimated_llm_output_tokens": total_out,
        "estimated_cost_usd": round((total_in * price.input + total_out * price.output) / 1e6, 4),
        "estimate_note": (
            "token counts are estimates (UTF-8 bytes / 4); extraction calls carry "
            f"{EXTRACTION_PROMPT_TOKENS} prompt tokens and ~{EXTRACTION_OUTPUT_TOKENS} output "
            "tokens each; the fact cache makes a re-run cheaper"
        ),
    }
