"""`python -m app inspect <export>`: what an import would do and roughly cost, without any LLM call.

The estimate prices the requests a pass would make with an empty fact cache, in both LLM modes:

- extraction: the packed requests `extract_facts` would send (`plan.estimate_extraction`: the same
  packing, the real request text), input by our estimator; output as the reply's JSON carrying
  the facts the offline rules find in each request — a floor, since a model finds more;
- MEMORY: one call over the facts (at most `fact_token_budget` tokens of them);
- v2: one call over the sampled conversations plus MEMORY, the sample cut as the pass cuts it
  to fit `ANTHROPIC_INPUT_TOKENS_PER_MINUTE` (request_fit.py).

In batch mode extraction (and reduce, when the facts outgrow the budget) go through the Message
Batches API at half price; MEMORY and v2 stay realtime. Token counts come from `estimate_tokens`
(UTF-8 bytes / 4), not from the model's tokenizer; `docs/BENCHMARKS.md` compares them with what
a simulator run's ledger shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.config import Settings
from app.domain import Conversation
from app.pricing import BATCH_DISCOUNT, price_for
from app.processors import prompts
from app.processors.extraction.plan import estimate_extraction, offline_answers
from app.processors.reading.export_reader import ExportReader
from app.processors.reading.ingest_stats import IngestStats
from app.processors.reading.text import estimate_tokens
from app.processors.reading.v2_sample import V2Sampler
from app.processors.request_fit import sections_sample_tokens

__all__ = ["FACT_TOKENS", "inspect_export"]

# A fact as MEMORY's request lists it and its reply writes it: "- (2024-05-02) The user …".
FACT_TOKENS = 22
_MEMORY_HEADINGS_TOKENS = 60
_SECTIONS_OUTPUT_TOKENS = 900
# Placeholder user id: chunk ids differ per user but counts and hashes do not.
_INSPECT_USER = "00000000-0000-0000-0000-000000000000"


def _counted(
    reader: ExportReader, stats: IngestStats, sampler: V2Sampler
) -> Iterator[Conversation]:
    for conversation in reader:
        stats.add_conversation(conversation)
        sampler.offer(conversation)
        yield conversation


def _usd(tokens_in: int, tokens_out: int, settings: Settings, *, batch: bool = False) -> float:
    price = price_for(settings)
    usd = (tokens_in * price.input + tokens_out * price.output) / 1e6
    return usd * BATCH_DISCOUNT if batch else usd


def inspect_export(path: Path, *, settings: Settings) -> dict[str, Any]:
    """A JSON-ready summary of the export at `path`. Raises `BadExport` as an import would."""
    reader = ExportReader(path, settings=settings)
    stats = IngestStats()
    sampler = V2Sampler(settings.v2_sample_size)
    extraction = estimate_extraction(
        _counted(reader, stats, sampler),
        settings=settings,
        user_id=_INSPECT_USER,
        answer=offline_answers(),
    )
    fact_tokens = min(settings.fact_token_budget, extraction.facts * FACT_TOKENS)
    memory_in = estimate_tokens(prompts.MEMORY_SYSTEM) + fact_tokens + _MEMORY_HEADINGS_TOKENS
    memory_out = fact_tokens + _MEMORY_HEADINGS_TOKENS
    budget = sections_sample_tokens(
        memory_tokens=memory_out,
        input_tokens_per_minute=settings.anthropic_input_tokens_per_minute,
    )
    sample = sampler.fit(limit=settings.v2_sample_size, max_tokens=budget)
    v2_in = estimate_tokens(prompts.SECTIONS_SYSTEM) + estimate_tokens(sample.text) + memory_out
    after_in, after_out = memory_in + v2_in, memory_out + _SECTIONS_OUTPUT_TOKENS
    calls = extraction.requests + 2
    total_in = extraction.input_tokens + after_in
    total_out = extraction.output_tokens + after_out
    realtime = _usd(total_in, total_out, settings)
    batch = _usd(extraction.input_tokens, extraction.output_tokens, settings, batch=True) + _usd(
        after_in, after_out, settings
    )
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
        "chunks": extraction.chunks,
        "chunk_target_tokens": settings.chunk_target_tokens,
        "v2_sample_conversations": len(sampler),
        "v2": {
            "input_tokens_per_minute": settings.anthropic_input_tokens_per_minute,
            "sample_token_budget": budget,
            "conversations": sample.conversations,
            "conversations_left_out": sample.left_out,
            "chars": len(sample.text),
            "input_tokens": v2_in,
        },
        "model": settings.anthropic_model,
        "extraction": {
            "request_tokens": settings.extraction_request_tokens,
            "requests": extraction.requests,
            "excerpts": extraction.excerpts,
            "chunks_without_user_words": extraction.skipped,
            "excerpt_tokens": extraction.excerpt_tokens,
            "input_tokens": extraction.input_tokens,
            "output_tokens": extraction.output_tokens,
            "facts_found_by_offline_rules": extraction.facts,
        },
        "estimated_llm_calls": calls,
        "estimated_llm_input_tokens": total_in,
        "estimated_llm_output_tokens": total_out,
        "estimated_cost_usd": round(realtime, 4),
        "estimated_cost_usd_by_mode": {"realtime": round(realtime, 4), "batch": round(batch, 4)},
        "llm_mode": settings.llm_mode,
        "estimate_note": (
            "token counts are estimates (UTF-8 bytes / 4) for an empty fact cache; chunks are "
            f"packed {settings.extraction_request_tokens} excerpt tokens a request; output "
            "assumes the facts the offline rules find (a model finds more); batch mode halves "
            "extraction's price; a re-run pays only for chunks not yet cached"
        ),
    }
