"""Running the real full pass (or its front half) on a LocalStore, for the benchmarks.

`run_job` is `run_full_pass` exactly as the JobRunner calls it: a job enqueued and claimed on a
`LocalStore`, a `JobContext` with the ports and settings, then `finish_job`. The LLM is the real
`AnthropicLLM` against a simulator URL, or the offline provider, or `InstantLLM` (no facts, no
wait) to time ingestion without extraction work, or `ManyFactsLLM`: the offline provider, except
that every extraction returns `n` distinct facts, as a real model does on a chatty chunk (the
offline rules find few facts in the generator's word salad, which would flatter memory figures).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.adapters.anthropic_llm import AnthropicLLM
from app.adapters.local_store import LocalStore
from app.adapters.offline_llm import OfflineLLM
from app.config import Settings
from app.domain import Chunk, Fact, FactCategory, JobStatus, NewJob
from app.ports import (
    LLM,
    ExtractionRequest,
    ExtractionResult,
    LLMCall,
    LLMReply,
    MemoryRequest,
    ReduceRequest,
    SectionsRequest,
)
from app.pricing import price_for
from app.processors.context import JobContext
from app.processors.extraction.stage import ExtractionOutcome, extract_facts
from app.processors.ingest_flow import ingest_and_extract
from app.processors.ledger import CostLedger
from app.processors.pipeline import run_full_pass
from bench.common import USER_ID, stream
from bench.make_export import WORDS

__all__ = ["InstantLLM", "ManyFactsLLM", "make_llm", "run_front_half", "run_job"]

WORKER = "bench-worker"


class InstantLLM:
    """Answers every extraction with no facts, at once or after `delay_s` (an idle wait, like a
    remote API's latency, without the SDK's CPU): ingestion's time without extraction's work."""

    provider = "offline"
    model = "instant"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[ExtractionResult]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        result = ExtractionResult(facts=tuple([] for _ in request.excerpts))
        return LLMReply(value=result, call=LLMCall(task="extract_facts", model=self.model))

    async def probe(self) -> None:
        return None

    async def reduce_facts(self, request: ReduceRequest) -> LLMReply[list[str]]:
        raise NotImplementedError

    async def write_memory(self, request: MemoryRequest) -> LLMReply[str]:
        raise NotImplementedError

    async def write_sections(self, request: SectionsRequest) -> LLMReply[dict[str, Any]]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


_CATEGORIES = list(FactCategory)


class ManyFactsLLM(OfflineLLM):
    """The offline provider, but every excerpt of a request gets `n` distinct ~90-character facts
    (as a model would on chatty chunks, whatever the request packs)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[ExtractionResult]:
        per_excerpt = []
        for excerpt in request.excerpts:
            rng = random.Random(excerpt.chunk_id)
            per_excerpt.append(
                [
                    Fact(
                        category=_CATEGORIES[i % len(_CATEGORIES)],
                        text="The user " + " ".join(rng.choice(WORDS) for _ in range(12)) + ".",
                    )
                    for i in range(self.n)
                ]
            )
        result = ExtractionResult(facts=tuple(per_excerpt))
        return LLMReply(value=result, call=LLMCall(task="extract_facts", model=self.model))


def make_llm(kind: str, settings: Settings) -> LLM:
    """`sim` (AnthropicLLM on settings.anthropic_base_url), `offline`, `instant`,
    `sleep:SECONDS` (`InstantLLM(SECONDS)`) or `facts:N` (`ManyFactsLLM(N)`)."""
    if kind == "sim":
        return AnthropicLLM.from_settings(settings)
    if kind == "offline":
        return OfflineLLM()
    if kind.startswith("facts:"):
        return ManyFactsLLM(int(kind.split(":", 1)[1]))
    if kind.startswith("sleep:"):
        return InstantLLM(float(kind.split(":", 1)[1]))
    return InstantLLM()


async def run_job(
    store: LocalStore, *, export: Path, llm: LLM, settings: Settings, force: bool = False
) -> dict[str, Any]:
    """One full pass through the real pipeline; the job row's stats and the wall time.

    Without `force`, an export identical to the last completed one is recognised and skipped.
    """
    storage_path = f"imports/{USER_ID}/{export.name}"
    await store.ensure_profile(USER_ID)
    store.put_export(storage_path, export)
    await store.enqueue_job(NewJob(user_id=USER_ID, storage_path=storage_path, force=force))
    job = await store.claim_job(worker_id=WORKER, lease_seconds=24 * 3600)
    assert job is not None
    ctx = JobContext(job=job, store=store, llm=llm, settings=settings)
    started = time.perf_counter()
    await run_full_pass(job, ctx)
    wall = time.perf_counter() - started
    await store.finish_job(job_id=job.id, worker_id=WORKER, status=JobStatus.COMPLETE)
    row = await store.get_job(job.id)
    assert row is not None
    return {"wall_s": round(wall, 2), "stats": row.stats}


async def run_front_half(
    store: LocalStore, *, export: Path, llm: LLM, settings: Settings
) -> dict[str, Any]:
    """parse → chunk → save → extract, overlapped (`ingest_and_extract`), and its wall time."""
    job, _ = await store.enqueue_job(NewJob(user_id=USER_ID, storage_path="unused"))
    await store.ensure_profile(USER_ID)
    ctx = JobContext(job=job, store=store, llm=llm, settings=settings)
    ledger = CostLedger(price_for(settings), llm.provider, llm.model)
    started = time.perf_counter()
    result = await ingest_and_extract(ctx, path=export, ledger=ledger)
    wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 2),
        "durations_ms": ctx.durations_ms,
        "chunks": result.stats.chunks,
        "calls": result.extraction.calls,
        "facts": result.extraction.facts_found,
    }


def extract_counts(stats: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, Any] = stats.get("counts", {}).get("extract_facts", {})
    return counts


async def close_all(llms: Sequence[LLM]) -> None:
    for llm in llms:
        await llm.aclose()


async def timed_extraction(
    chunks: Sequence[Chunk],
    *,
    llm: LLM,
    store: LocalStore,
    settings: Settings,
    concurrency: int,
    request_tokens: int | None = None,
) -> tuple[ExtractionOutcome, CostLedger, float]:
    """`extract_facts` alone over `chunks` (no signals): its outcome, its ledger, wall seconds.
    `request_tokens`: the packing budget (default: the setting's)."""
    ledger = CostLedger(price_for(settings), llm.provider, llm.model)
    started = time.perf_counter()
    outcome = await extract_facts(
        stream(chunks),
        user_id=USER_ID,
        signals=[],
        llm=llm,
        store=store,
        concurrency=concurrency,
        max_failure_ratio=settings.extraction_failure_ratio,
        ledger=ledger,
        request_tokens=request_tokens or settings.extraction_request_tokens,
    )
    return outcome, ledger, time.perf_counter() - started
