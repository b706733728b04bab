"""extract_facts: one LLM call per uncached chunk, a bounded number in flight, paid once.

What the model sees is `build_extraction_text` (extraction_text.py): the user's own words, and of
the assistant only the tail of the turn the user is answering. Results are cached per (user,
chunk content hash, EXTRACTOR_VERSION), so a re-run, or a later export that repeats old
conversations, makes no call for a chunk already done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

import structlog

from app.domain import Chunk, Fact, UserSignal
from app.errors import (
    AppError,
    LLMBadOutput,
    LLMError,
    LLMFatal,
    LLMUnavailable,
    PipelineError,
)
from app.ports import LLM, ExtractionRequest, LLMCall, LLMReply, Store
from app.processors.extraction.scheduling import AdaptiveLimit, ChunkFeed, Outcome, failure_kind
from app.processors.extraction.text import (
    DEFAULT_ASSISTANT_CONTEXT_CHARS,
    EXTRACTOR_VERSION,
    build_extraction_text,
    signal_batches,
    signal_key,
)
from app.processors.ledger import CostLedger

__all__ = ["REORDER_LIMIT", "ExtractionOutcome", "FactSink", "extract_facts"]

STEP = "extract_facts"

# Results that arrived ahead of an earlier one still in flight wait at most this many: past it,
# no new call starts until the earlier one is in (~2.5 KB a result of 10 facts: ~5 MB).
REORDER_LIMIT = 2_000
_log = structlog.get_logger(__name__)

SignalSource = Callable[[], Sequence[UserSignal]] | Sequence[UserSignal]
FactSink = Callable[[Iterable[Fact]], object]


@dataclass(slots=True)
class ExtractionOutcome:
    """Counts only: the facts themselves went to the sink (a `FactBook`) as they arrived."""

    facts_found: int = 0
    chunks_total: int = 0
    chunks_cached: int = 0  # answered by the cache (or by an identical chunk earlier in this run)
    chunks_extracted: int = 0
    chunks_failed: int = 0  # for a permanent, recorded reason (refused, unusable twice…)
    chunks_skipped: int = 0  # no words of the user's: no call
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    # Not extracted because the provider did not answer: never silently dropped — the step
    # fails (the job retries, paying only for these) unless the LLM waits such outages out.
    chunks_unextracted: int = 0
    unextracted_by_kind: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    concurrency: int = 0
    signal_batches: int = 0
    chars_sent: int = 0
    chars_in_chunks: int = 0


@dataclass(frozen=True, slots=True)
class _Unit:
    """One call's worth of work: a chunk, or a batch of user signals."""

    key: str
    request: ExtractionRequest
    conversation_id: str | None
    date: date | None
    from_signal: bool = False

    def attach(self, facts: Sequence[Fact]) -> list[Fact]:
        return [
            replace(
                f,
                conversation_id=self.conversation_id,
                date=self.date,
                from_signal=f.from_signal or self.from_signal,
            )
            for f in facts
        ]


def _chunk_unit(chunk: Chunk, text: str) -> _Unit:
    day = chunk.created_at.date() if chunk.created_at else None
    request = ExtractionRequest(
        chunk_id=chunk.id,
        conversation_id=chunk.conversation_id,
        title=chunk.title,
        date=day,
        text=text,
    )
    return _Unit(chunk.content_hash, request, chunk.conversation_id, day)


def _signal_unit(batch: tuple[UserSignal, ...]) -> _Unit:
    conversations = {s.conversation_id for s in batch if s.conversation_id}
    dates = [s.created_at.date() for s in batch if s.created_at]
    key = signal_key(batch)
    request = ExtractionRequest(
        chunk_id=key,
        conversation_id=next(iter(conversations)) if len(conversations) == 1 else "",
        title="The user's own notes about themselves",
        date=max(dates) if dates else None,
        text="",
        signals=batch,
    )
    cid = request.conversation_id or None
    return _Unit(key, request, cid, request.date, from_signal=True)


class _Run:
    def __init__(
        self,
        *,
        user_id: str,
        llm: LLM,
        store: Store,
        ledger: CostLedger,
        concurrency: int,
        max_failure_ratio: float,
        expected_total: int | None,
        version: str,
        sink: FactSink | None,
        on_progress: Callable[[], object] | None = None,
    ) -> None:
        self.user_id, self.llm, self.store, self.ledger = user_id, llm, store, ledger
        self.version = version
        self.sink = sink
        self.on_progress = on_progress
        self.max_failure_ratio = max_failure_ratio
        self.expected_total = expected_total
        self.limit = AdaptiveLimit(concurrency)
        self.out = ExtractionOutcome(concurrency=concurrency)
        # Units waiting on a call, each with its place in the stream (see `_deliver`).
        self.inflight: dict[str, list[tuple[int, _Unit]]] = {}
        self.issued = 0  # places handed out
        self.next_place = 0  # the place whose facts go to the sink next
        self.ready: dict[int, list[Fact]] = {}  # results that arrived ahead of `next_place`
        self.advanced = asyncio.Event()
        # Extracted but not yet in the cache: normally only while its own write is under way;
        # longer if that write failed (the final flush tries again).
        self.done: dict[str, list[Fact]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.stop: BaseException | None = None
        self.on_stop: Callable[[], None] = lambda: None

    # --- scheduling ---------------------------------------------------------------------
    async def submit(self, units: Sequence[_Unit]) -> None:
        while len(self.ready) >= REORDER_LIMIT and self.stop is None:
            self.advanced.clear()  # an earlier call is slow: wait for it, do not pile up
            await self.advanced.wait()
        fresh = [u.key for u in units if u.key not in self.inflight and u.key not in self.done]
        cached = await self.store.get_cached_facts(
            user_id=self.user_id, extractor_version=self.version, content_hashes=fresh
        )
        hits = 0
        for unit in units:
            place, self.issued = self.issued, self.issued + 1
            known = cached.get(unit.key, self.done.get(unit.key))
            if known is not None:
                self._deliver(place, unit.attach(known))
                self.out.chunks_cached += 1
                hits += 1
            elif unit.key in self.inflight:
                # An identical chunk is being extracted.
                self.inflight[unit.key].append((place, unit))
            else:
                await self.limit.acquire()
                if self.stop is not None:
                    self.limit.release(outcome="cancelled")
                    return
                self.inflight[unit.key] = [(place, unit)]
                task = asyncio.create_task(self._call(unit))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        self.ledger.record_cache_hits(STEP, hits)
        if len(self.done) >= 50:
            await self.flush()

    async def _ask(self, unit: _Unit) -> LLMReply[list[Fact]]:
        """One chunk's facts; a reply that could not be used is asked for once more."""
        try:
            return await self.llm.extract_facts(unit.request)
        except LLMBadOutput as exc:
            self.ledger.record_failure(STEP, "bad output, asked again")
            _log.info("extract.asked_again", chunk_id=unit.request.chunk_id, error=exc.code)
            return await self.llm.extract_facts(unit.request)

    async def _call(self, unit: _Unit) -> None:
        epoch = self.limit.epoch
        outcome: Outcome = "cancelled"
        try:
            reply = await self._ask(unit)
            outcome = "ok"
            self._record(unit, reply.value, reply.call)
            # Still inside the slot: calls in flight plus results not yet cached never exceed
            # the concurrency limit, which bounds what a crash can make us pay twice.
            await self._write_through(unit.key)
        except LLMFatal as exc:
            outcome = "fatal"
            self._halt(exc)
        except LLMUnavailable as exc:
            outcome = "unavailable"
            self._unextracted(unit.key, exc)
        except LLMError as exc:
            outcome = "failed"
            self._failed(unit.key, failure_kind(exc), exc)
        except Exception as exc:  # a bug or a store failure: stop the step, do not lose it
            outcome = "failed"
            self._halt(exc)
        finally:
            self.limit.release(outcome=outcome, epoch=epoch)

    def _record(self, unit: _Unit, facts: list[Fact], call: LLMCall) -> None:
        self.out.calls += 1
        self.ledger.record(STEP, call)
        raw = [replace(f, conversation_id=None, date=None) for f in facts]
        self.done[unit.key] = raw
        waiting = self.inflight.pop(unit.key, [])
        self.out.chunks_extracted += 1
        self.out.chunks_cached += max(0, len(waiting) - 1)
        for place, each in waiting:
            self._deliver(place, each.attach(raw))

    def _deliver(self, place: int, facts: list[Fact]) -> None:
        """Hand facts to the sink in stream order, whatever order the calls finish in.

        The sink (a `FactBook`) merges and prunes as facts arrive, so its result depends on
        their order: stream order makes it the same on every run of the same export.
        """
        self.ready[place] = facts
        while self.next_place in self.ready:
            batch = self.ready.pop(self.next_place)
            self.next_place += 1
            self.out.facts_found += len(batch)
            if batch and self.sink is not None:
                self.sink(batch)
        self.advanced.set()
        if self.on_progress is not None:
            self.on_progress()

    async def _write_through(self, key: str) -> None:
        """Cache one result as soon as it is paid for: a crash then loses only calls in flight."""
        raw = self.done.get(key)
        if raw is None:
            return
        try:
            await self.store.put_cached_facts(
                user_id=self.user_id, extractor_version=self.version, entries={key: raw}
            )
        except AppError as exc:
            _log.warning("extract.cache_write_deferred", error=type(exc).__name__)
            return
        self.done.pop(key, None)

    def _unextracted(self, key: str, exc: LLMUnavailable) -> None:
        waiting = self.inflight.pop(key, [])
        for place, _ in waiting:
            self._deliver(place, [])
            self.out.chunks_unextracted += 1
            kinds = self.out.unextracted_by_kind
            kinds[exc.reason] = kinds.get(exc.reason, 0) + 1
            self.ledger.record_failure(STEP, exc.reason)
        _log.warning("extract.chunk_unextracted", reason=exc.reason)
        total = max(self.expected_total or 0, self.out.chunks_total)
        if self.out.chunks_unextracted > self.max_failure_ratio * total:
            self._halt(self.unextracted_error(total))

    def unextracted_error(self, total: int) -> LLMUnavailable:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.out.unextracted_by_kind.items()))
        reason = max(self.out.unextracted_by_kind, key=self.out.unextracted_by_kind.__getitem__)
        return LLMUnavailable(
            f"{self.out.chunks_unextracted} of {total} chunks could not be extracted because "
            f"the provider did not answer ({kinds}); the job is retried and pays only for them",
            reason=reason,
        )

    def _failed(self, key: str, kind: str, exc: LLMError) -> None:
        waiting = self.inflight.pop(key, [])
        for place, _ in waiting:
            self._deliver(place, [])
            self.out.chunks_failed += 1
            self.out.failures_by_kind[kind] = self.out.failures_by_kind.get(kind, 0) + 1
            self.ledger.record_failure(STEP, kind)
        _log.warning(
            "extract.chunk_failed",
            chunk_id=waiting[0][1].request.chunk_id if waiting else None,
            kind=kind,
            error=type(exc).__name__,
            failed=self.out.chunks_failed,
        )
        if self.expected_total and self.out.chunks_failed > self.max_failure_ratio * max(
            self.expected_total, self.out.chunks_total
        ):
            self._halt(self.threshold_error(self.expected_total))

    def _halt(self, exc: BaseException) -> None:
        if self.stop is None:
            self.stop = exc
            _log.error("extract.stopping", error=type(exc).__name__, calls=self.out.calls)
            self.advanced.set()
            self.on_stop()

    # --- ending -------------------------------------------------------------------------
    async def drain(self) -> None:
        while self.tasks and self.stop is None:
            await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)
            if len(self.done) >= 50:
                await self.flush()

    async def abandon(self) -> None:
        """Stop at once: cancel what is in flight, keep (cache) what already finished."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.flush()

    async def flush(self) -> None:
        if not self.done:
            return
        entries, self.done = self.done, {}
        await self.store.put_cached_facts(
            user_id=self.user_id, extractor_version=self.version, entries=entries
        )

    def threshold_error(self, total: int) -> PipelineError:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.out.failures_by_kind.items()))
        return PipelineError(
            f"{self.out.chunks_failed} of {total} chunks failed ({kinds}); above the "
            f"{self.max_failure_ratio:.0%} limit — retry the job later"
        )


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
    assistant_context_chars: int = DEFAULT_ASSISTANT_CONTEXT_CHARS,
    lookup_batch: int = 50,
    expected_total: int | None = None,
    extractor_version: str = EXTRACTOR_VERSION,
    sink: FactSink | None = None,
    on_progress: Callable[[], object] | None = None,
) -> ExtractionOutcome:
    """Facts of every chunk (as they stream in) and of the user's signals, with provenance,
    handed to `sink` (in the pipeline `FactBook.add_all`) one result at a time, in stream order:
    nothing here keeps them. The outcome holds the counts.

    A chunk whose reply is unusable is asked for once more; one that still fails, or that the
    model refuses, is counted as failed for that recorded reason, and the step fails
    (PipelineError) when more than `max_failure_ratio` of all chunks failed so. A chunk the
    provider did not answer (`LLMUnavailable`: only when the LLM does not wait outages out, see
    app/breaker.py) is never dropped: the step fails with `LLMUnavailable`, retryable.
    `LLMFatal` stops it at once. Whatever finished before a stop is written to the cache first,
    so a retry does not pay for it again.
    """
    run = _Run(
        user_id=user_id,
        llm=llm,
        store=store,
        ledger=ledger,
        concurrency=concurrency,
        max_failure_ratio=max_failure_ratio,
        expected_total=expected_total,
        version=extractor_version,
        sink=sink,
        on_progress=on_progress,
    )
    _log.info("extract.started", concurrency=concurrency, extractor_version=extractor_version)
    feed = ChunkFeed(chunks, batch_size=lookup_batch)
    run.on_stop = feed.stop
    try:
        while run.stop is None and (batch := await feed.next_batch()):
            units = []
            for chunk in batch:
                run.out.chunks_total += 1
                run.out.chars_in_chunks += len(chunk.content)
                text = build_extraction_text(chunk, assistant_context_chars=assistant_context_chars)
                if not text:
                    run.out.chunks_skipped += 1
                    continue
                run.out.chars_sent += len(text)
                units.append(_chunk_unit(chunk, text))
            await run.submit(units)
        if run.stop is None:
            found = signals() if callable(signals) else signals
            units = [_signal_unit(b) for b in signal_batches(found)]
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
        facts=out.facts_found,
        concurrency_end=run.limit.current,
        max_in_flight=run.limit.max_in_flight,
    )
    if out.chunks_unextracted:
        raise run.unextracted_error(out.chunks_total)
    if out.chunks_total and out.chunks_failed > max_failure_ratio * out.chunks_total:
        raise run.threshold_error(out.chunks_total)
    return out
