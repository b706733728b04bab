"""extract_facts: uncached chunks packed into requests, a bounded number in flight, paid once.

What the model sees of a chunk is `build_extraction_text` (extraction/text.py): the user's own
words, and of the assistant only the tail of the turn the user is answering. Consecutive uncached
chunks — across conversations — share a request up to `request_tokens` (packing.py), each
delimited with its own id and date. Results are cached per chunk (user, content hash, extractor
version) inside the request's slot, so a crash, a re-run or a re-export pays only for chunks not
yet cached, packed anew.

A reply that skips an excerpt, or names one the request did not hold, is handled: the skipped
excerpts are asked about again alone, unknown ids are dropped and counted. A request whose reply
is unusable (cut at max_tokens, not the schema) or that the model refuses is split in halves and
each half asked again; a single excerpt gets one more try, then fails for that recorded reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import structlog

from app.domain import Chunk, UserSignal
from app.ports import LLM, Store
from app.processors.extraction.packing import chunk_unit, signal_unit
from app.processors.extraction.requests import (
    REORDER_LIMIT,
    ExtractionOutcome,
    FactSink,
    RequestRun,
)
from app.processors.extraction.scheduling import ChunkFeed
from app.processors.extraction.text import (
    DEFAULT_ASSISTANT_CONTEXT_CHARS,
    EXTRACTOR_VERSION,
    build_extraction_text,
    signal_batches,
)
from app.processors.ledger import CostLedger

__all__ = [
    "DEFAULT_REQUEST_TOKENS",
    "PACK_WAIT_SECONDS",
    "REORDER_LIMIT",
    "ExtractionOutcome",
    "FactSink",
    "extract_facts",
]

# Excerpt tokens a request carries (EXTRACTION_REQUEST_TOKENS; docs/EXTRACTION.md says why).
DEFAULT_REQUEST_TOKENS = 4_000
# A request being filled waits at most this long for more excerpts when the stream pauses (the
# parser busy, the store slow): then it goes as it is. Bounds latency, not cost: a paused stream
# is rare, and a request is filled in milliseconds while chunks flow.
PACK_WAIT_SECONDS = 2.0
_log = structlog.get_logger(__name__)

SignalSource = Callable[[], Sequence[UserSignal]] | Sequence[UserSignal]


async def extract_facts(
    chunks: AsyncIterator[Chunk],
    *,
    user_id: str,
    signals: SignalSource,
    llm: LLM,
    store: Store,
    concurrency: int,
    max_failure_ratio: float,
    ledger: CostLedger,
    request_tokens: int = DEFAULT_REQUEST_TOKENS,
    pack_wait_s: float = PACK_WAIT_SECONDS,
    assistant_context_chars: int = DEFAULT_ASSISTANT_CONTEXT_CHARS,
    lookup_batch: int = 50,
    expected_total: int | None = None,
    extractor_version: str = EXTRACTOR_VERSION,
    sink: FactSink | None = None,
    on_progress: Callable[[], object] | None = None,
    failed_keys: Mapping[str, str] | None = None,
    record_hits: bool = True,
) -> ExtractionOutcome:
    """Facts of every chunk (as they stream in) and of the user's signals, with provenance,
    handed to `sink` (in the pipeline `FactBook.add_all`) one result at a time, in stream order:
    nothing here keeps them. The outcome holds the counts.

    A chunk that fails for good (refused, or unusable after its own retry) is counted for that
    recorded reason, and the step fails (PipelineError) when more than `max_failure_ratio` of
    all chunks failed so. A chunk the provider did not answer (`LLMUnavailable`: only when the
    LLM does not wait outages out, see app/breaker.py) is never dropped: the step fails with
    `LLMUnavailable`, retryable. `LLMFatal` stops it at once. Whatever finished before a stop
    is written to the cache first, so a retry does not pay for it again.

    Batch mode's last pass (batch_mode.py) runs this over a cache its batches filled: `failed_keys`
    are chunks that failed in their batch (counted as failed for that reason, no call), and
    `record_hits=False` keeps the batches' work from being counted as cache hits.
    """
    run = RequestRun(
        user_id=user_id,
        llm=llm,
        store=store,
        ledger=ledger,
        concurrency=concurrency,
        request_tokens=request_tokens,
        max_failure_ratio=max_failure_ratio,
        expected_total=expected_total,
        version=extractor_version,
        sink=sink,
        on_progress=on_progress,
        failed_keys=failed_keys,
        record_hits=record_hits,
    )
    _log.info(
        "extract.started",
        concurrency=concurrency,
        request_tokens=request_tokens,
        extractor_version=extractor_version,
    )
    feed = ChunkFeed(chunks, batch_size=lookup_batch)
    run.on_stop = feed.stop
    try:
        while run.stop is None:
            batch = await feed.next_batch(wait_s=pack_wait_s if len(run.packer) else None)
            if batch is None:  # the stream paused with a request half filled: send it
                await run.dispatch(run.packer.flush())
                continue
            if not batch:
                break
            units = []
            for chunk in batch:
                run.out.chunks_total += 1
                run.out.chars_in_chunks += len(chunk.content)
                text = build_extraction_text(chunk, assistant_context_chars=assistant_context_chars)
                if not text:
                    run.out.chunks_skipped += 1
                    continue
                run.out.chars_sent += len(text)
                units.append(chunk_unit(chunk, text))
            await run.submit(units)
        if run.stop is None:
            found = signals() if callable(signals) else signals
            units = [signal_unit(b) for b in signal_batches(found)]
            run.out.signal_batches = len(units)
            run.out.chunks_total += len(units)
            await run.submit(units)
        await run.drain()
    except BaseException:
        await run.abandon()
        await feed.aclose()
        raise
    await feed.aclose()
    if run.stop is not None:
        await run.abandon()
        raise run.stop
    await run.flush()
    out = run.out
    _log.info(
        "extract.finished",
        chunks=out.chunks_total,
        cached=out.chunks_cached,
        extracted=out.chunks_extracted,
        failed=out.chunks_failed,
        unextracted=out.chunks_unextracted,
        skipped=out.chunks_skipped,
        calls=out.calls,
        split=out.requests_split,
        asked_alone=out.asked_alone,
        facts=out.facts_found,
        concurrency_end=run.limit.current,
        max_in_flight=run.limit.max_in_flight,
    )
    if out.chunks_unextracted:
        raise run.unextracted_error(out.chunks_total)
    if out.chunks_total and out.chunks_failed > max_failure_ratio * out.chunks_total:
        raise run.threshold_error(out.chunks_total)
    return out
