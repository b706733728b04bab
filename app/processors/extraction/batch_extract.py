"""extract_facts in batch mode: the uncached chunks packed as realtime packs them, submitted as
Message Batches, their results split per chunk into the fact cache as they are read.

`submit_stream` takes the chunk stream once: chunks the cache answers, or that a pending batch
of this job already holds (a resumed job), are not packed; the rest are packed (packing.py) and
submitted as soon as a batch holds `max_requests` requests — the excerpts' text is not kept
after that. `settle` polls every batch in flight and reads each as it ends: a succeeded reply
is split per excerpt and cached at once; an excerpt it left out is asked again alone; an
errored, expired or canceled request is asked again packed; an unusable reply of several
excerpts asks each again alone. Every such excerpt waits in `needs` for `resubmit_from` (a
later read of the export) at most `max_resubmits` times, then fails for its recorded reason
(`failed`, which the last pass counts as realtime counts its failures).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import structlog

from app.batch_port import BatchRequest, BatchResult, LLMBatch
from app.domain import Fact
from app.errors import LLMBatchNotFound, LLMRefused, LLMUnavailable
from app.ports import ExtractionResult, Store
from app.processors.batch_jobs import JobBatches, Lost, Submission
from app.processors.extraction.packing import Packer, Unit, request_of
from app.processors.extraction.scheduling import failure_kind
from app.processors.ledger import CostLedger

__all__ = ["BatchCounts", "BatchExtraction"]

STEP = "extract_facts"
_LOOKUP = 50  # units per cache lookup, as the realtime stage looks up
_WRITE = 50  # chunks' facts per cache write while results are read
_log = structlog.get_logger(__name__)


@dataclass(slots=True)
class BatchCounts:
    """What batch mode did, for the step's counts."""

    batches: int = 0  # submitted by this attempt
    resumed_batches: int = 0  # submitted by an earlier attempt, polled and read by this one
    requests: int = 0
    billed: int = 0  # results with a reply (succeeded): what the provider charges for
    cached_before: int = 0  # chunks the cache answered before any batch
    rounds: int = 0  # reads of the export to ask again
    resubmitted: int = 0  # excerpts asked again
    asked_alone: int = 0  # excerpts a reply left out, asked again on their own
    unknown_excerpts: int = 0
    lost_batches: int = 0
    results_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Need:
    tries: int  # failed tries so far
    alone: bool
    reason: str


class BatchExtraction:
    def __init__(
        self,
        *,
        user_id: str,
        version: str,
        store: Store,
        batches: JobBatches,
        ledger: CostLedger,
        request_tokens: int,
        max_requests: int,
        max_resubmits: int,
    ) -> None:
        self.user_id, self.version, self.store = user_id, version, store
        self.batches, self.ledger = batches, ledger
        self.request_tokens = request_tokens
        self.max_requests = max(1, max_requests)
        self.max_resubmits = max_resubmits
        self.pending: set[str] = set()  # keys some unread batch of this job will answer
        self.in_flight: list[LLMBatch] = []
        self.needs: dict[str, _Need] = {}
        self.failed: dict[str, str] = {}  # key → the recorded reason it failed for
        self.counts = BatchCounts()
        self._buffer: list[Submission] = []

    async def resume(self) -> None:
        """Batches an earlier attempt submitted: polled, not submitted again."""
        for batch in await self.batches.unread("extract"):
            keys = await self.batches.keys_of(batch)
            self.pending.update(k for parts in keys.values() for k in parts)
            self.in_flight.append(batch)
            self.counts.resumed_batches += 1

    # --- submitting ---------------------------------------------------------------------

    async def submit_stream(self, units: AsyncIterator[list[Unit]]) -> None:
        """The first read: pack and submit every unit the cache and pending batches lack."""
        packer = Packer(budget_tokens=self.request_tokens)
        async for group in units:
            fresh = [u.key for u in group if u.key not in self.pending]
            cached = await self.store.get_cached_facts(
                user_id=self.user_id, extractor_version=self.version, content_hashes=fresh
            )
            hits = 0
            for unit in group:
                if unit.key in cached:
                    hits += 1
                elif unit.key not in self.pending:
                    self.pending.add(unit.key)  # an identical chunk later is not asked twice
                    if full := packer.add(unit):
                        await self._add(full)
            self.counts.cached_before += hits
            self.ledger.record_cache_hits(STEP, hits)
        await self._add(packer.flush())
        await self._submit()

    async def resubmit_from(self, units: AsyncIterator[list[Unit]]) -> None:
        """A later read: ask again about what `needs` holds, alone where a reply left it out."""
        wanted, asked = dict(self.needs), set[str]()
        self.counts.rounds += 1
        packer = Packer(budget_tokens=self.request_tokens)
        async for group in units:
            for unit in group:
                need = wanted.get(unit.key)
                if need is None or unit.key in asked:
                    continue
                asked.add(unit.key)
                self.counts.resubmitted += 1
                if need.alone:
                    await self._add([unit])
                elif full := packer.add(unit):
                    await self._add(full)
        await self._add(packer.flush())
        await self._submit()
        for key in wanted.keys() - asked:  # not in the export any more: nothing to ask
            self._fail(key, "not found in the export again")

    async def _add(self, pack: list[Unit]) -> None:
        if not pack:
            return
        custom_id = f"x{len(self._buffer):06d}"
        item = BatchRequest(custom_id, request_of(pack))
        self._buffer.append(Submission(item, tuple(u.key for u in pack)))
        if len(self._buffer) >= self.max_requests:
            await self._submit()

    async def _submit(self) -> None:
        if not self._buffer:
            return
        items, self._buffer = self._buffer, []  # the excerpts' text goes with the request
        batch = await self.batches.submit("extract", items)
        self.in_flight.append(batch)
        self.pending.update(k for item in items for k in item.keys)
        self.counts.batches += 1
        self.counts.requests += len(items)

    # --- reading ------------------------------------------------------------------------

    async def settle(self) -> None:
        """Wait for every batch in flight; read each into the cache as it ends."""
        async for ended in self.batches.ended(self.in_flight):
            if isinstance(ended, Lost):
                self.counts.lost_batches += 1
                for key in ended.keys:
                    self._again(key, alone=False, reason="batch lost")
            else:
                await self._read(ended)
        self.in_flight = []

    async def _read(self, batch: LLMBatch) -> None:
        entries: dict[str, list[Fact]] = {}
        seen: set[str] = set()
        try:
            async for result, keys in self.batches.results(batch):
                seen.add(result.custom_id)
                self._take(result, keys, entries)
                if len(entries) >= _WRITE:
                    await self._cache(entries)
                    entries = {}
                    self.batches.pulse()
        except LLMBatchNotFound:
            self.counts.lost_batches += 1
            for custom_id, keys in (await self.batches.keys_of(batch)).items():
                for key in keys if custom_id not in seen else ():
                    self._again(key, alone=False, reason="batch lost")
        await self._cache(entries)
        await self.batches.mark_read(batch)

    async def _cache(self, entries: dict[str, list[Fact]]) -> None:
        if entries:
            await self.store.put_cached_facts(
                user_id=self.user_id, extractor_version=self.version, entries=entries
            )

    def _take(self, result: BatchResult, keys: Sequence[str], out: dict[str, list[Fact]]) -> None:
        kinds = self.counts.results_by_kind
        kinds[result.kind] = kinds.get(result.kind, 0) + 1
        if result.call is not None:
            self.counts.billed += 1
            self.ledger.record(STEP, result.call)
        error = result.error
        if result.kind == "succeeded" and error is None:
            assert isinstance(result.value, ExtractionResult)
            self._split(result.value, keys, out)
        elif result.kind == "succeeded" or (
            result.kind == "errored" and not isinstance(error, LLMUnavailable)
        ):
            # A reply that cannot be used, or a request the API refused: the request is the
            # problem, not the moment. Several excerpts: each alone; one: as realtime would.
            kind = failure_kind(error) if error is not None else "rejected"
            self.ledger.record_failure(STEP, f"{kind}, in a batch")
            for key in keys:
                if len(keys) == 1 and (isinstance(error, LLMRefused) or result.kind == "errored"):
                    self._fail(key, kind)
                else:
                    self._again(key, alone=True, reason=kind)
        else:  # errored for a passing reason, expired or canceled: the same request again
            reason = error.reason if isinstance(error, LLMUnavailable) else result.kind
            self.ledger.record_failure(STEP, f"{reason}, resubmitted")
            for key in keys:
                self._again(key, alone=False, reason=reason)

    def _split(
        self, value: ExtractionResult, keys: Sequence[str], out: dict[str, list[Fact]]
    ) -> None:
        if value.unknown:
            self.counts.unknown_excerpts += value.unknown
            self.ledger.record_failure(STEP, "unknown excerpt id in reply")
        for i, key in enumerate(keys):
            facts = value.facts[i] if i < len(value.facts) else None
            if facts is None:
                self.counts.asked_alone += 1
                self._again(key, alone=True, reason="bad output")
            else:
                out[key] = list(facts)
                self.needs.pop(key, None)

    def _again(self, key: str, *, alone: bool, reason: str) -> None:
        before = self.needs.get(key)
        tries = (before.tries if before else 0) + 1
        if tries > self.max_resubmits:
            self._fail(key, reason)
            return
        self.needs[key] = _Need(tries, alone or (before.alone if before else False), reason)

    def _fail(self, key: str, reason: str) -> None:
        self.needs.pop(key, None)
        self.failed[key] = reason
        _log.warning("extract.batch_chunk_failed", reason=reason)
