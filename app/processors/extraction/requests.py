"""The requests of one extraction: what is packed, sent, split, asked again, recorded, cached and
handed on in stream order (see stage.py for the whole step).

Each request runs in a concurrency slot (`AdaptiveLimit`) and writes its chunks' results to the
fact cache before it gives the slot back, so requests in flight plus results not yet cached never
exceed the limit: that bounds what a crash can make us pay twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from app.domain import Fact
from app.errors import (
    AppError,
    LLMBadOutput,
    LLMError,
    LLMFatal,
    LLMUnavailable,
    PipelineError,
)
from app.ports import LLM, Store
from app.processors.extraction.packing import Packer, Unit, request_of
from app.processors.extraction.scheduling import AdaptiveLimit, Outcome, failure_kind
from app.processors.ledger import CostLedger

__all__ = ["REORDER_LIMIT", "ExtractionOutcome", "FactSink", "RequestRun"]

STEP = "extract_facts"
# Results that arrived ahead of an earlier one still in flight wait at most this many: past it,
# no new request starts until the earlier one is in (~2.5 KB a result of 10 facts: ~5 MB).
REORDER_LIMIT = 2_000
_log = structlog.get_logger(__name__)

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
    calls: int = 0  # requests paid for
    requests_split: int = 0  # unusable or refused requests asked again in halves
    asked_alone: int = 0  # excerpts a reply skipped, asked about again on their own
    unknown_excerpts: int = 0  # reply entries naming an excerpt the request did not hold
    concurrency: int = 0
    signal_batches: int = 0
    chars_sent: int = 0
    chars_in_chunks: int = 0


class RequestRun:
    def __init__(
        self,
        *,
        user_id: str,
        llm: LLM,
        store: Store,
        ledger: CostLedger,
        concurrency: int,
        request_tokens: int,
        max_failure_ratio: float,
        expected_total: int | None,
        version: str,
        sink: FactSink | None,
        on_progress: Callable[[], object] | None = None,
        failed_keys: Mapping[str, str] | None = None,
        record_hits: bool = True,
    ) -> None:
        self.user_id, self.llm, self.store, self.ledger = user_id, llm, store, ledger
        # Batch mode: chunks that already failed in their Message Batch (key → reason), and
        # cache hits that are the batches' own work (not an earlier run's: not counted as hits).
        self.failed_keys = failed_keys or {}
        self.record_hits = record_hits
        self.version = version
        self.sink = sink
        self.on_progress = on_progress
        self.max_failure_ratio = max_failure_ratio
        self.expected_total = expected_total
        self.limit = AdaptiveLimit(concurrency)
        self.packer = Packer(budget_tokens=request_tokens)
        self.out = ExtractionOutcome(concurrency=concurrency)
        # Units waiting on a request (packed, or in flight), each with its place in the stream.
        self.inflight: dict[str, list[tuple[int, Unit]]] = {}
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
    async def submit(self, units: Sequence[Unit]) -> None:
        if len(self.ready) >= REORDER_LIMIT:
            await self.dispatch(self.packer.flush())  # never wait on a request not yet sent
        while len(self.ready) >= REORDER_LIMIT and self.stop is None:
            self.advanced.clear()  # an earlier request is slow: wait for it, do not pile up
            await self.advanced.wait()
        fresh = [u.key for u in units if u.key not in self.inflight and u.key not in self.done]
        cached = await self.store.get_cached_facts(
            user_id=self.user_id, extractor_version=self.version, content_hashes=fresh
        )
        hits = 0
        for unit in units:
            if self.stop is not None:
                return
            place, self.issued = self.issued, self.issued + 1
            known = cached.get(unit.key, self.done.get(unit.key))
            if known is not None:
                self._deliver(place, unit.attach(known))
                self.out.chunks_cached += 1
                hits += 1
            elif unit.key in self.inflight:
                # An identical chunk is already packed or being extracted.
                self.inflight[unit.key].append((place, unit))
            elif unit.key in self.failed_keys:
                self.inflight[unit.key] = [(place, unit)]
                reason = self.failed_keys[unit.key]
                self._failed(unit, reason, LLMError(f"failed in its message batch: {reason}"))
            else:
                self.inflight[unit.key] = [(place, unit)]
                if full := self.packer.add(unit):
                    await self.dispatch(full)
        if self.record_hits:
            self.ledger.record_cache_hits(STEP, hits)
        if len(self.done) >= 50:
            await self.flush()

    async def dispatch(self, pack: list[Unit]) -> None:
        """Send one request when a slot is free."""
        if not pack:
            return
        await self.limit.acquire()
        if self.stop is not None:
            self.limit.release(outcome="cancelled")
            return
        task = asyncio.create_task(self._call(pack))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _call(self, pack: list[Unit]) -> None:
        epoch = self.limit.epoch
        outcome: Outcome = "cancelled"
        try:
            outcome = await self._extract(pack)
            # Still inside the slot: requests in flight plus results not yet cached never
            # exceed the concurrency limit, which bounds what a crash can make us pay twice.
            await self._write_through([u.key for u in pack])
        except LLMFatal as exc:
            outcome = "fatal"
            self._halt(exc)
        except Exception as exc:  # a bug or a store failure: stop the step, do not lose it
            outcome = "failed"
            self._halt(exc)
        finally:
            self.limit.release(outcome=outcome, epoch=epoch)

    async def _extract(self, pack: list[Unit], *, second_try: bool = False) -> Outcome:
        """Ask about `pack`; split, retry alone or record failures as the reply requires."""
        try:
            reply = await self.llm.extract_facts(request_of(pack))
        except LLMUnavailable as exc:
            self._unextracted(pack, exc)
            return "unavailable"
        except LLMFatal:
            raise
        except LLMError as exc:
            return await self._unusable(pack, exc, second_try=second_try)
        self.out.calls += 1
        self.ledger.record(STEP, reply.call)
        result = reply.value
        if result.unknown:
            self.out.unknown_excerpts += result.unknown
            self.ledger.record_failure(STEP, "unknown excerpt id in reply")
        skipped: list[Unit] = []
        for unit, facts in zip(pack, result.facts, strict=False):
            if facts is None:
                skipped.append(unit)
            else:
                self._record(unit, facts)
        skipped += pack[len(result.facts) :]
        if skipped and len(pack) == 1:
            return await self._unusable(
                skipped, LLMBadOutput("the reply left the excerpt out"), second_try=second_try
            )
        for unit in skipped:  # each on its own: a short reply the model can keep straight
            self.out.asked_alone += 1
            await self._extract([unit])
        return "ok"

    async def _unusable(self, pack: list[Unit], exc: LLMError, *, second_try: bool) -> Outcome:
        if len(pack) > 1:
            self.out.requests_split += 1
            self.ledger.record_failure(STEP, f"{failure_kind(exc)}, split")
            half = len(pack) // 2
            await self._extract(pack[:half])
            await self._extract(pack[half:])
            return "ok"
        if isinstance(exc, LLMBadOutput) and not second_try:
            self.ledger.record_failure(STEP, "bad output, asked again")
            return await self._extract(pack, second_try=True)
        self._failed(pack[0], failure_kind(exc), exc)
        return "failed"

    def _record(self, unit: Unit, facts: list[Fact]) -> None:
        self.done[unit.key] = list(facts)
        waiting = self.inflight.pop(unit.key, [])
        self.out.chunks_extracted += 1
        self.out.chunks_cached += max(0, len(waiting) - 1)
        for place, each in waiting:
            self._deliver(place, each.attach(facts))

    def _deliver(self, place: int, facts: list[Fact]) -> None:
        """Hand facts to the sink in stream order, whatever order the requests finish in.

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

    async def _write_through(self, keys: list[str]) -> None:
        """Cache a request's results as soon as they are paid for: a crash then loses only
        requests in flight."""
        entries = {key: self.done[key] for key in keys if key in self.done}
        if not entries:
            return
        try:
            await self.store.put_cached_facts(
                user_id=self.user_id, extractor_version=self.version, entries=entries
            )
        except AppError as exc:
            _log.warning("extract.cache_write_deferred", error=type(exc).__name__)
            return
        for key in entries:
            self.done.pop(key, None)

    def _unextracted(self, pack: list[Unit], exc: LLMUnavailable) -> None:
        for unit in pack:
            for place, _ in self.inflight.pop(unit.key, []):
                self._deliver(place, [])
                self.out.chunks_unextracted += 1
                kinds = self.out.unextracted_by_kind
                kinds[exc.reason] = kinds.get(exc.reason, 0) + 1
        self.ledger.record_failure(STEP, exc.reason)
        _log.warning("extract.request_unextracted", reason=exc.reason, excerpts=len(pack))
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

    def _failed(self, unit: Unit, kind: str, exc: LLMError) -> None:
        for place, _ in self.inflight.pop(unit.key, []):
            self._deliver(place, [])
            self.out.chunks_failed += 1
            self.out.failures_by_kind[kind] = self.out.failures_by_kind.get(kind, 0) + 1
            self.ledger.record_failure(STEP, kind)
        _log.warning(
            "extract.chunk_failed",
            chunk_id=unit.excerpt.chunk_id,
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
        await self.dispatch(self.packer.flush())
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
