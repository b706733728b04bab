"""extract_facts with `LLM_MODE=batch`: submit and wait, then the realtime stage over the cache.

Why two passes. The fact book merges and prunes facts as they arrive, so its result depends on
their order; realtime feeds it in stream order, and the same export must give the same MEMORY
input in either mode. Batch results come back hours later and in any order, so they are not fed
to the book: they only fill the per-chunk fact cache, as they are read. Then the export (still
downloaded) is read once more and the realtime stage runs over it, answered entirely by the
cache — no call — feeding the book exactly as a realtime pass would, counting the chunks that
failed in their batches as failed (EXTRACTION_FAILURE_RATIO applies as in realtime). Holding
the results in memory instead would not be flat (a 1 GB export's facts), and a second read of
the file costs minutes against a batch's hours.

1. The first read (the import's own stream): chunks the cache or a pending batch of this job
   already answers are skipped; the rest are packed as realtime packs them and submitted as
   Message Batches of at most BATCH_MAX_REQUESTS (batch_extract.py).
2. Every batch is polled every BATCH_POLL_SECONDS and read into the cache as it ends.
3. While some excerpts must be asked again (errored, expired, canceled, left out of a reply),
   the export is read again for them and they go in a new batch, at most BATCH_MAX_RESUBMITS
   times each.
4. The last read: the realtime stage, over the cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import structlog

from app.batch_port import MessageBatches
from app.domain import Chunk, UserSignal
from app.processors.batch_jobs import JobBatches
from app.processors.context import JobContext
from app.processors.extraction.batch_extract import BatchCounts, BatchExtraction
from app.processors.extraction.packing import Unit, chunk_unit, signal_unit
from app.processors.extraction.stage import ExtractionOutcome, FactSink, extract_facts
from app.processors.extraction.text import build_extraction_text, extractor_version, signal_batches
from app.processors.ledger import CostLedger
from app.processors.reading.restream import ExportChunks

__all__ = ["extract_in_batches"]

_GROUP = 50  # units per group: one cache lookup each, as in realtime
_log = structlog.get_logger(__name__)


async def _units(
    chunks: AsyncIterator[Chunk], signals: Callable[[], Sequence[UserSignal]]
) -> AsyncIterator[list[Unit]]:
    """The stream's units in order, in groups: chunks with words of the user's, then the
    user's signals in their batches (what the realtime stage asks about, in its order)."""
    group: list[Unit] = []
    async for chunk in chunks:
        if text := build_extraction_text(chunk):
            group.append(chunk_unit(chunk, text))
        if len(group) >= _GROUP:
            yield group
            group = []
    tail: Iterable[Unit] = (signal_unit(b) for b in signal_batches(signals()))
    group.extend(tail)
    if group:
        yield group


async def extract_in_batches(
    ctx: JobContext,
    chunks: AsyncIterator[Chunk],
    *,
    api: MessageBatches,
    path: Path,
    signals: Callable[[], Sequence[UserSignal]],
    ledger: CostLedger,
    sink: FactSink,
) -> tuple[ExtractionOutcome, BatchCounts]:
    settings, job = ctx.settings, ctx.job
    version = extractor_version(ctx.llm.provider, ctx.llm.model)
    jobs = JobBatches.of(ctx, api)
    run = BatchExtraction(
        user_id=job.user_id,
        version=version,
        store=ctx.store,
        batches=jobs,
        ledger=ledger,
        request_tokens=settings.extraction_request_tokens,
        max_requests=settings.batch_max_requests,
        max_resubmits=settings.batch_max_resubmits,
    )
    await run.resume()
    await run.submit_stream(_units(chunks, signals))
    await run.settle()
    again = ExportChunks(path, settings=settings, user_id=job.user_id, pulse=ctx.pulse)
    while run.needs:
        await run.resubmit_from(_units(again.chunks(), lambda: again.signals))
        await run.settle()
    await ctx.set_note(None)
    _log.info("extract.batches_read", **asdict(run.counts))

    outcome = await extract_facts(
        again.chunks(),
        user_id=job.user_id,
        signals=lambda: again.signals,
        llm=ctx.llm,
        store=ctx.store,
        concurrency=settings.fact_extraction_concurrency,
        max_failure_ratio=settings.extraction_failure_ratio,
        ledger=ledger,
        request_tokens=settings.extraction_request_tokens,
        extractor_version=version,
        expected_total=job.chunk_count,
        sink=sink,
        on_progress=ctx.pulse,
        failed_keys=run.failed,
        record_hits=False,
    )
    # The counts mean what they mean in realtime: cached = answered by an earlier run's work,
    # extracted = asked about in this one (its batches' answers, read back from the cache).
    counts = run.counts
    from_batches = max(0, outcome.chunks_cached - counts.cached_before)
    outcome.chunks_extracted += from_batches
    outcome.chunks_cached -= from_batches
    outcome.calls += counts.billed
    outcome.asked_alone += counts.asked_alone
    outcome.unknown_excerpts += counts.unknown_excerpts
    if outcome.calls > counts.billed:
        _log.warning("extract.batch_stragglers", calls=outcome.calls - counts.billed)
    return outcome, counts
