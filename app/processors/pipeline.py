"""The full pass (DESIGN §2), step by step. The one place that awaits the ports in order.

A run is idempotent from the top: chunks are upserted by deterministic id, facts come from the cache
when a chunk was already extracted, status writes are plain overwrites, and MEMORY once saved for
the same facts is not paid for again (a checkpoint on the job row). So a job interrupted at any
point (deploy, crash) resumes by simply running again, paying only for what was not yet saved.

`complete` is a promise (DESIGN §3): every chunk extracted or failed for a recorded permanent
reason, MEMORY from the model (or the deterministic rendering when its replies were unusable), and
the profile's columns all describing this import — from `save_memory` on, `soulprint_text` is the
held sections plus the new MEMORY, and the new sections replace both when v2 succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from app.domain import PIPELINE_VERSION, SECTION_NAMES, FullPassStatus, Job, JobStatus
from app.errors import LLMBadOutput, LLMError, LLMFatal, LLMUnavailable
from app.forgetting import job_temp_prefix
from app.pricing import price_for_llm
from app.processors.composing.consolidation import ConsolidatedFact
from app.processors.composing.memory import MemoryOutcome, generate_memory
from app.processors.composing.reduce import reduce_facts
from app.processors.composing.reduce_batches import reduce_asker
from app.processors.composing.sections import (
    regenerate_sections,
    render_soulprint_text,
    section_columns,
)
from app.processors.context import JobContext, NeedsLargeSlot, Pipeline, StepFailed
from app.processors.ingest_flow import IngestResult, ingest_and_extract
from app.processors.ledger import CostLedger
from app.queue_order import SMALL_JOB_BYTES
from app.sections import SectionSet

__all__ = ["PIPELINES", "facts_digest", "held_sections", "run_full_pass"]

log = structlog.get_logger(__name__)

_HASH_BLOCK = 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def facts_digest(facts: Sequence[ConsolidatedFact]) -> str:
    """What MEMORY is made from, as a hash: the same facts on a resumed attempt, the same MEMORY."""
    digest = hashlib.sha256()
    for f in facts:
        when = (f.first_date.isoformat() if f.first_date else "", str(f.last_date or ""))
        digest.update(
            f"{f.category.value}\x00{f.text}\x00{when}\x00{f.count}\x00{f.from_signal}\x01".encode()
        )
    return digest.hexdigest()


def held_sections(profile: dict[str, Any] | None) -> SectionSet:
    """The sections the profile holds now (from an earlier import, or the product's quick pass);
    a missing or unreadable column reads as "not enough data"."""
    sections: dict[str, Any] = {}
    for name in SECTION_NAMES:
        raw = (profile or {}).get(f"{name}_md")
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            value = None
        sections[name] = value if isinstance(value, dict) else {}
    try:
        return SectionSet.model_validate(sections)
    except ValidationError:
        return SectionSet.model_validate({name: {} for name in SECTION_NAMES})


def _complete_fields() -> dict[str, Any]:
    return {
        "full_pass_status": FullPassStatus.COMPLETE.value,
        "full_pass_completed_at": datetime.now(UTC),
        "full_pass_error": None,
    }


def _left_nothing_unextracted(job: Job) -> bool:
    """Whether the job's own counts say every chunk was extracted; counts that do not read
    (a row written by hand, an older version) say no, and the export is processed again."""
    counts = job.stats.get("counts")
    if not isinstance(counts, dict):
        return False
    completed = counts.get("complete")
    if isinstance(completed, dict) and "unchanged_export_of" in completed:
        return True  # itself recognised as a re-send of a pass that was checked then
    extraction = counts.get("extract_facts")
    if not isinstance(extraction, dict):
        return False
    # Before `unextracted` was counted, `failed` held transient failures too.
    missing = extraction.get("unextracted", extraction.get("failed", 1))
    return isinstance(missing, int) and missing == 0


async def _unchanged(ctx: JobContext, digest: str) -> Job | None:
    """The finished job whose results the profile holds, if it was for this very export and
    left nothing unextracted.

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
        and _left_nothing_unextracted(last)
    ):
        return last
    return None


async def run_full_pass(job: Job, ctx: JobContext) -> None:
    store, llm, settings = ctx.store, ctx.llm, ctx.settings
    price = price_for_llm(settings, provider=llm.provider, model=llm.model)
    ledger = ctx.ledger = CostLedger(price, llm.provider, llm.model, mode=settings.llm_mode)
    ledger.carry(job.stats.get("llm"))
    await store.update_job(job.id, {"llm_provider": llm.provider})
    try:
        with tempfile.TemporaryDirectory(prefix=job_temp_prefix(job.id)) as tmp:
            export = Path(tmp) / "export"
            async with ctx.step("download_conversations"):
                size = await store.download_export(job.storage_path, export)
                digest = await asyncio.to_thread(_sha256, export)
                await store.update_job(job.id, {"export_sha256": digest, "export_bytes": size})
                ctx.count("download_conversations", bytes=size)
            if ctx.small_slot and size > SMALL_JOB_BYTES:
                raise NeedsLargeSlot(size)
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

        memory = await _memory(ctx, consolidated, ledger)
        sections = await _regenerate(ctx, ingest, memory.markdown, ledger)

        async with ctx.step("complete"):
            fields: dict[str, Any] = _complete_fields()
            if sections is None:
                # The profile's own sections stay; the text shows them with the new MEMORY.
                sections = held_sections(await store.get_profile(job.user_id))
            else:
                fields |= section_columns(sections)
            fields["memory_md"] = memory.markdown
            fields["soulprint_text"] = render_soulprint_text(sections, memory.markdown)
            await store.update_profile(job.user_id, fields)
    finally:
        await ctx.record_stats()


async def _memory(
    ctx: JobContext, facts: list[ConsolidatedFact], ledger: CostLedger
) -> MemoryOutcome:
    """hierarchical_reduce → generate_memory → save_memory, or MEMORY as an earlier attempt of
    this job saved it for the very same facts (no call paid twice)."""
    store, job = ctx.store, ctx.job
    digest = facts_digest(facts)
    saved = ctx.checkpoints.get("memory")
    if isinstance(saved, dict) and saved.get("input") == digest:
        profile = await store.get_profile(job.user_id)
        markdown = (profile or {}).get("memory_md")
        if markdown:
            for step in ("hierarchical_reduce", "generate_memory", "save_memory"):
                async with ctx.step(step):
                    ctx.count(step, resumed="saved by an earlier attempt of this job")
            ctx.count("generate_memory", source=saved.get("source", "llm"))
            return MemoryOutcome(markdown=markdown, source=saved.get("source", "llm"), calls=0)

    async with ctx.step("hierarchical_reduce"):
        reduced = await reduce_facts(
            facts,
            llm=ctx.llm,
            token_budget=ctx.settings.fact_token_budget,
            ledger=ledger,
            ask=reduce_asker(ctx, ledger),  # cached; a Message Batch a level in batch mode
        )
        ctx.count(
            "hierarchical_reduce", facts=len(reduced.facts), levels=reduced.levels, cut=reduced.cut
        )

    async with ctx.step("generate_memory"):
        memory = await generate_memory(reduced.facts, llm=ctx.llm, ledger=ledger)
        ctx.count("generate_memory", source=memory.source, chars=len(memory.markdown))

    async with ctx.step("save_memory"):
        # Saved at once (the user benefits even if v2 fails), with the text it belongs in.
        held = held_sections(await store.get_profile(job.user_id))
        await store.update_profile(
            job.user_id,
            {
                "memory_md": memory.markdown,
                "soulprint_text": render_soulprint_text(held, memory.markdown),
            },
        )
        ctx.checkpoints["memory"] = {"input": digest, "source": memory.source}
    return memory


def _skip_reason(error: BaseException) -> str:
    if isinstance(error, LLMFatal):
        return f"Anthropic refused the work ({error.reason}): {error.message}"
    if isinstance(error, LLMBadOutput):
        return "the model's sections were not usable twice"
    if isinstance(error, LLMError):
        return f"the model could not process the request: {error.message}"
    return "an unexpected error (logged with this job's id)"


async def _regenerate(
    ctx: JobContext, ingest: IngestResult, memory_md: str, ledger: CostLedger
) -> SectionSet | None:
    """v2 sections. Waiting for an unavailable provider happens inside the call (the breaker);
    unusable replies, a refusal to bill or an unexpected error skip v2 — never the pass's
    failure (DESIGN §3): the earlier sections stay, and the job says why."""
    per_minute = ctx.settings.anthropic_input_tokens_per_minute

    def render_sample(*, limit: int, max_tokens: int) -> str:
        sample = ingest.sampler.fit(limit=limit, max_tokens=max_tokens)
        # What one request could carry, for the job's stats: no conversation text.
        ctx.count(
            "v2_regeneration",
            conversations=sample.conversations,
            left_out=sample.left_out,
            chars=len(sample.text),
            sample_tokens=sample.tokens,
            sample_token_budget=max_tokens,
        )
        return sample.text

    try:
        async with ctx.step("v2_regeneration", sample=len(ingest.sampler)):
            ctx.count("v2_regeneration", input_tokens_per_minute=per_minute)
            return await regenerate_sections(
                render_sample=render_sample,
                memory_md=memory_md,
                llm=ctx.llm,
                ledger=ledger,
                input_tokens_per_minute=per_minute,
                sample_limit=ctx.settings.v2_sample_size,
            )
    except StepFailed as failed:
        cause = failed.error
        if isinstance(cause, LLMUnavailable):
            raise  # not a reason to complete with less: the job goes back to the queue
        reason = _skip_reason(cause)
        if not isinstance(cause, LLMError):
            log.error("v2.unexpected_error", error_type=type(cause).__name__, exc_info=cause)
        log.warning("v2.skipped", error_type=type(cause).__name__, reason="non-fatal")
        ctx.count("v2_regeneration", skipped=reason)
        await ctx.set_note(f"v2 skipped, the earlier sections were kept: {reason}"[:500])
        if isinstance(cause, LLMFatal) and ctx.alerter is not None:
            await ctx.alerter.v2_skipped(ctx.job, reason=reason)
        return None


PIPELINES: dict[str, Pipeline] = {PIPELINE_VERSION: run_full_pass}
