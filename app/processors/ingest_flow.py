"""The streaming front half of a full pass: parse → chunk → save → extract, overlapped.

The export is parsed in a worker thread (ijson is synchronous) which hands each conversation's
chunks to the event loop through a bounded queue; a saver upserts them in batches and forwards them
through a second bounded queue to extraction. The queues are the backpressure: memory stays flat
whatever the export's size, and the wall time of the three steps approaches the slowest of them,
not their sum.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog

from app.domain import Chunk, UserSignal
from app.processors.composing.consolidation import FactBook
from app.processors.context import JobContext, StepFailed
from app.processors.extraction.batch_mode import extract_in_batches
from app.processors.extraction.stage import ExtractionOutcome, extract_facts
from app.processors.extraction.text import extractor_version
from app.processors.ledger import CostLedger
from app.processors.reading.chunking import chunk_as_configured
from app.processors.reading.export_reader import ExportReader
from app.processors.reading.ingest_stats import IngestStats
from app.processors.reading.v2_sample import V2Sampler

__all__ = ["IngestResult", "ingest_and_extract"]

log = structlog.get_logger(__name__)

_PARSED_QUEUE = 8  # conversations' chunk lists waiting to be saved
_SAVED_QUEUE = 256  # chunks waiting for extraction
_PUT_POLL_SECONDS = 0.5
_PROGRESS_EVERY_S = 2.0
_DONE = None


@dataclass
class IngestResult:
    stats: IngestStats
    sampler: V2Sampler
    extraction: ExtractionOutcome
    book: FactBook  # every fact extracted, consolidated as it arrived (bounded)
    export_format: str | None = None
    signals: list[UserSignal] = field(default_factory=list)
    stale_chunks_removed: int = 0  # rows of earlier imports removed by this one's commit


class _Producer:
    """Runs in a worker thread; stops promptly when the event loop side gives up."""

    def __init__(
        self,
        *,
        ctx: JobContext,
        path: Path,
        out: asyncio.Queue[list[Chunk] | None],
        loop: asyncio.AbstractEventLoop,
        result: IngestResult,
    ) -> None:
        self.ctx = ctx
        self.path = path
        self.out = out
        self.loop = loop
        self.result = result
        self.cancelled = threading.Event()

    def _put(self, item: list[Chunk] | None) -> bool:
        future = asyncio.run_coroutine_threadsafe(self.out.put(item), self.loop)
        while True:
            try:
                future.result(timeout=_PUT_POLL_SECONDS)
                return True
            except TimeoutError:
                if self.cancelled.is_set():
                    future.cancel()
                    return False

    def run(self) -> None:
        settings = self.ctx.settings
        reader = ExportReader(self.path, settings=settings)
        stats, sampler = self.result.stats, self.result.sampler
        for conversation in reader:
            if self.cancelled.is_set():
                return
            self.ctx.pulse()
            stats.add_conversation(conversation)
            sampler.offer(conversation)
            self.result.signals.extend(conversation.signals)
            chunks = chunk_as_configured(
                conversation, user_id=self.ctx.job.user_id, settings=settings
            )
            stats.add_chunks(chunks)
            if chunks and not self._put(chunks):
                return
        self.result.export_format = reader.container + "/" + (reader.format or "unknown")
        self._put(_DONE)


async def _parse(producer: _Producer) -> None:
    async with producer.ctx.step("chunk_conversations"):
        try:
            await asyncio.to_thread(producer.run)
        finally:
            producer.cancelled.set()
        stats = producer.result.stats
        producer.ctx.count(
            "chunk_conversations",
            format=producer.result.export_format,
            conversations=stats.conversations,
            messages=stats.messages,
            chunks=stats.chunks,
            signals=sum(stats.signals.values()),
        )
        # Known now, long before extraction ends: progress displays can show "n of total".
        await producer.ctx.record(
            {
                "conversation_count": stats.conversations,
                "message_count": stats.messages,
                "chunk_count": stats.chunks,
            }
        )


async def _save(
    ctx: JobContext,
    parsed: asyncio.Queue[list[Chunk] | None],
    saved: asyncio.Queue[Chunk | None],
    result: IngestResult,
) -> None:
    """Upsert in batches, forward every chunk to extraction, then commit the import: its rows
    become the user's chunks and an earlier import's leftovers go, in one transaction — only at
    the end, so the user is never left without chunks mid-run, nor with a mix of two imports
    after a pass that fails for good (the runner rolls an uncommitted import back)."""
    job, store = ctx.job, ctx.store
    batch_size = ctx.settings.chunk_batch_size
    async with ctx.step("save_chunks"):
        pending: list[Chunk] = []
        written = 0
        while (chunks := await parsed.get()) is not _DONE:
            for chunk in chunks:
                pending.append(chunk)
                await saved.put(chunk)
            if len(pending) >= batch_size:
                await store.upsert_chunks(user_id=job.user_id, job_id=job.id, chunks=pending)
                written += len(pending)
                pending = []
                ctx.pulse()
        if pending:
            await store.upsert_chunks(user_id=job.user_id, job_id=job.id, chunks=pending)
            written += len(pending)
        await saved.put(_DONE)
        result.stale_chunks_removed = await store.commit_chunks(user_id=job.user_id, job_id=job.id)
        ctx.checkpoints["chunks"] = "committed"
        ctx.count("save_chunks", chunks=written, stale_removed=result.stale_chunks_removed)


async def _drain(queue: asyncio.Queue[Chunk | None]) -> AsyncIterator[Chunk]:
    while (chunk := await queue.get()) is not _DONE:
        yield chunk


class _Progress:
    """Each chunk answered (by a request or the cache) moves the job: a pulse for the stall
    watchdog, and — at most every `_PROGRESS_EVERY_S` — the row's progress (35 → 80 through
    extraction) and `stats.counts.extract_facts.done`, so a running job says "n of total"."""

    def __init__(self, ctx: JobContext, stats: IngestStats) -> None:
        self.ctx, self.stats = ctx, stats
        self.done = 0
        self.written_at = 0.0
        self.writing: asyncio.Task[None] | None = None

    def __call__(self) -> None:
        self.ctx.pulse()
        self.done += 1
        now = time.monotonic()
        if now - self.written_at < _PROGRESS_EVERY_S or (self.writing and not self.writing.done()):
            return
        self.written_at = now
        self.writing = asyncio.get_running_loop().create_task(self._write())

    async def settle(self) -> None:
        """Let a write under way land before the step ends (never after the next step's)."""
        if self.writing is not None:
            await self.writing

    async def _write(self) -> None:
        total = max(self.stats.chunks, self.done, 1)
        self.ctx.count("extract_facts", done=self.done, total_so_far=total)
        progress = 35 + int(45 * min(1.0, self.done / total))
        try:
            await self.ctx.record({"progress": progress})
        except Exception as exc:  # telemetry never fails the job
            log.warning("job.progress_write_failed", error_type=type(exc).__name__)
        await self.ctx.record_stats()


async def _extract(
    ctx: JobContext,
    saved: asyncio.Queue[Chunk | None],
    ledger: CostLedger,
    result: IngestResult,
    path: Path,
) -> ExtractionOutcome:
    settings = ctx.settings
    api = ctx.llm.batches() if settings.llm_mode == "batch" else None
    mode = "batch" if api is not None else "realtime"
    async with ctx.step(
        "extract_facts", concurrency=settings.fact_extraction_concurrency, mode=mode
    ):
        if api is not None:  # LLM_MODE=batch (extraction/batch_mode.py)
            outcome, batches = await extract_in_batches(
                ctx,
                _drain(saved),
                api=api,
                path=path,
                signals=lambda: result.signals,
                ledger=ledger,
                sink=result.book.add_all,
            )
            ctx.count("extract_facts", batch=asdict(batches))
        else:
            progress = _Progress(ctx, result.stats)
            outcome = await extract_facts(
                _drain(saved),
                user_id=ctx.job.user_id,
                signals=lambda: result.signals,
                llm=ctx.llm,
                store=ctx.store,
                concurrency=settings.fact_extraction_concurrency,
                max_failure_ratio=settings.extraction_failure_ratio,
                ledger=ledger,
                request_tokens=settings.extraction_request_tokens,
                extractor_version=extractor_version(ctx.llm.provider, ctx.llm.model),
                expected_total=ctx.job.chunk_count,
                sink=result.book.add_all,
                on_progress=progress,
            )
            await progress.settle()
        ctx.count(
            "extract_facts",
            mode=mode,
            concurrency=settings.fact_extraction_concurrency,
            chunks=outcome.chunks_total,
            cached=outcome.chunks_cached,
            extracted=outcome.chunks_extracted,
            failed=outcome.chunks_failed,
            failed_by_kind=outcome.failures_by_kind,
            requests_split=outcome.requests_split,
            asked_alone=outcome.asked_alone,
            unknown_excerpts=outcome.unknown_excerpts,
            unextracted=outcome.chunks_unextracted,
            skipped=outcome.chunks_skipped,
            facts=outcome.facts_found,
            fact_groups=len(result.book),
            calls=outcome.calls,
            # What the model was sent against all the chunks' text (docs/EXTRACTION.md).
            chars_sent=outcome.chars_sent,
            chars_in_chunks=outcome.chars_in_chunks,
        )
    return outcome


async def ingest_and_extract(ctx: JobContext, *, path: Path, ledger: CostLedger) -> IngestResult:
    loop = asyncio.get_running_loop()
    parsed: asyncio.Queue[list[Chunk] | None] = asyncio.Queue(maxsize=_PARSED_QUEUE)
    saved: asyncio.Queue[Chunk | None] = asyncio.Queue(maxsize=_SAVED_QUEUE)
    result = IngestResult(
        stats=IngestStats(),
        sampler=V2Sampler(ctx.settings.v2_sample_size),
        extraction=ExtractionOutcome(),
        book=FactBook(limit=ctx.settings.fact_group_limit),
    )
    producer = _Producer(ctx=ctx, path=path, out=parsed, loop=loop, result=result)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_parse(producer))
            group.create_task(_save(ctx, parsed, saved, result))
            extraction = group.create_task(_extract(ctx, saved, ledger, result, path))
    except BaseExceptionGroup as failures:
        producer.cancelled.set()
        raise _first_failure(failures) from None
    result.extraction = extraction.result()
    return result


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The failure that started it: a step's error, not the cancellations it caused."""
    flat: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            flat.append(error)

    walk(group)
    for error in flat:
        if isinstance(error, StepFailed):
            return error
    return flat[0]
