"""The full pass (DESIGN §2), step by step. The one place that awaits the ports in order.

A run is idempotent from the top: chunks are upserted by deterministic id, facts come from the cache
when a chunk was already extracted, and status writes are plain overwrites. So a job interrupted at
any point (deploy, crash) resumes by simply running again, paying only for chunks not yet cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from app.domain import PIPELINE_VERSION, FullPassStatus, Job, JobStatus
from app.errors import LLMFatal
from app.pricing import price_for_llm
from app.processors.composing.memory import generate_memory
from app.processors.composing.reduce import reduce_facts
from app.processors.composing.sections import (
    regenerate_sections,
    render_soulprint_text,
    section_columns,
)
from app.processors.context import JobContext, Pipeline
from app.processors.ingest_flow import IngestResult, ingest_and_extract
from app.processors.ledger import CostLedger
from app.sections import SectionSet

__all__ = ["PIPELINES", "run_full_pass"]

log = structlog.get_logger(__name__)

_HASH_BLOCK = 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _complete_fields() -> dict[str, Any]:
    return {
        "full_pass_status": FullPassStatus.COMPLETE.value,
        "full_pass_completed_at": datetime.now(UTC),
        "full_pass_error": None,
    }


async def _unchanged(ctx: JobContext, digest: str) -> Job | None:
    """The finished job whose results the profile holds, if it was for this very export.

    Only the user's latest finished job counts: after another import (or a failure that may
    have saved part of a run), the profile no longer holds this export's results.
    """
    if ctx.job.force:
        return None
    last = await ctx.store.last_finished_job(ctx.job.user_id)
    if (
        last is not None
        and last.id != ctx.job.id
        and last.status is JobStatus.COMPLETE
        and last.export_sha256 == digest
        and last.pipeline_version == ctx.job.pipeline_version
    ):
        return last
    return None


async def run_full_pass(job: Job, ctx: JobContext) -> None:
    store, llm, settings = ctx.store, ctx.llm, ctx.settings
    price = price_for_llm(settings, provider=llm.provider, model=llm.model)
    ledger = ctx.ledger = CostLedger(price, llm.provider, llm.model)
    await store.update_job(job.id, {"llm_provider": llm.provider})
    try:
        with tempfile.TemporaryDirectory(prefix="soulprint-") as tmp:
            export = Path(tmp) / "export"
            async with ctx.step("download_conversations"):
                size = await store.download_export(job.storage_path, export)
                digest = await asyncio.to_thread(_sha256, export)
                await store.update_job(job.id, {"export_sha256": digest})
                ctx.count("download_conversations", bytes=size)
            if previous := await _unchanged(ctx, digest):
                # Re-sent, not re-exported: the profile already holds this export's portrait.
                async with ctx.step("complete"):
                    await store.update_profile(job.user_id, _complete_fields())
                    ctx.count("complete", unchanged_export_of=previous.id)
                log.info("pass.skipped", reason="unchanged export", previous_job=previous.id)
                return
            ingest = await ingest_and_extract(ctx, path=export, ledger=ledger)

        async with ctx.step("consolidate_facts"):
            # Merged as they arrived (ingest.book); what is left is the book's final list.
            book = ingest.book
            consolidated = book.consolidated()
            ctx.count(
                "consolidate_facts",
                facts_in=book.facts_in,
                facts_out=len(consolidated),
                groups_pruned=book.groups_pruned,
                facts_pruned=book.facts_pruned,
            )

        async with ctx.step("hierarchical_reduce"):
            reduced = await reduce_facts(
                consolidated, llm=llm, token_budget=settings.fact_token_budget, ledger=ledger
            )
            ctx.count(
                "hierarchical_reduce",
                facts=len(reduced.facts),
                levels=reduced.levels,
                cut=reduced.cut,
            )

        async with ctx.step("generate_memory"):
            memory = await generate_memory(reduced.facts, llm=llm, ledger=ledger)
            ctx.count("generate_memory", source=memory.source, chars=len(memory.markdown))

        async with ctx.step("save_memory"):
            await store.update_profile(job.user_id, {"memory_md": memory.markdown})

        sections = await _regenerate(ctx, ingest, memory.markdown, ledger)

        async with ctx.step("complete"):
            fields: dict[str, Any] = _complete_fields()
            if sections is not None:
                fields |= section_columns(sections)
                fields["soulprint_text"] = render_soulprint_text(sections, memory.markdown)
            await store.update_profile(job.user_id, fields)
    finally:
        await ctx.record_stats()


async def _regenerate(
    ctx: JobContext, ingest: IngestResult, memory_md: str, ledger: CostLedger
) -> SectionSet | None:
    """v2 sections; failing here is not the job's failure (DESIGN §3): earlier sections stay."""
    try:
        async with ctx.step("v2_regeneration", sample=len(ingest.sampler)):
            return await regenerate_sections(
                render_sample=lambda limit: ingest.sampler.render(limit=limit),
                memory_md=memory_md,
                llm=ctx.llm,
                ledger=ledger,
            )
    except Exception as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, LLMFatal):
            raise
        log.warning("v2.skipped", error_type=type(cause).__name__, reason="non-fatal")
        ctx.count("v2_regeneration", skipped=type(cause).__name__)
        return None


PIPELINES: dict[str, Pipeline] = {PIPELINE_VERSION: run_full_pass}
