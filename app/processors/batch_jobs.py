"""One job's Message Batches: submitted and recorded on the job, polled until they end, read.

A batch is recorded (state `submitting`, with each request's cache keys) before the provider is
asked, and marked `in_progress` with the provider's id the moment it answers. A crash between
the two is the one window where a batch can be paid twice: on resume a `submitting` batch is
abandoned and its chunks packed again (docs/EXTRACTION.md). Every other state resumes: an
`in_progress` or `ended` batch is polled and read by whichever process runs the job next.

While batches are processing the job's note says how far they are ("extract_facts: batch 2 of
3, 5,120 of 8,000 requests done") and every poll is a pulse, so the stall watchdog leaves a
batch that is legitimately processing alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import structlog

from app.batch_port import BatchKind, BatchRequest, BatchResult, LLMBatch, MessageBatches
from app.errors import LLMBatchNotFound
from app.ports import Store
from app.processors.context import JobContext

__all__ = ["JobBatches", "Lost", "Submission"]

_log = structlog.get_logger(__name__)
_STEPS: dict[BatchKind, str] = {"extract": "extract_facts", "reduce": "hierarchical_reduce"}


@dataclass(frozen=True, slots=True)
class Submission:
    """One request to submit, with the cache keys of its parts in order."""

    request: BatchRequest
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Lost:
    """A batch the provider no longer has (or that never reached it): its requests' keys."""

    batch: LLMBatch
    keys: tuple[str, ...]


class JobBatches:
    def __init__(
        self,
        *,
        job_id: str,
        store: Store,
        api: MessageBatches,
        poll_s: float,
        note: Callable[[str | None], Awaitable[None]],
        pulse: Callable[[], None],
    ) -> None:
        self.job_id, self.store, self.api = job_id, store, api
        self.poll_s = poll_s
        self.note, self.pulse = note, pulse
        self.submitted = 0  # batches this process created

    @classmethod
    def of(cls, ctx: JobContext, api: MessageBatches) -> JobBatches:
        """The running job's batches: polled every BATCH_POLL_SECONDS, the wait shown as the
        job's note, its lease kept by the pulse."""
        return cls(
            job_id=ctx.job.id,
            store=ctx.store,
            api=api,
            poll_s=ctx.settings.batch_poll_seconds,
            note=ctx.set_note,
            pulse=ctx.pulse,
        )

    async def unread(self, kind: BatchKind) -> list[LLMBatch]:
        """The job's batches of `kind` a resumed job still has to read. Those that never
        reached the provider (a crash mid-submission) and those it no longer has are abandoned
        here: their keys are not pending, so the caller asks about them again."""
        pending: list[LLMBatch] = []
        for batch in await self.store.list_llm_batches(self.job_id):
            if batch.kind != kind or batch.state in ("read", "abandoned"):
                continue
            if batch.state == "submitting" or batch.provider_batch_id is None:
                await self._abandon(batch, "it may never have reached the provider")
                continue
            try:
                await self.api.retrieve(batch.provider_batch_id)
            except LLMBatchNotFound:
                await self._abandon(batch, "the provider does not know it")
                continue
            pending.append(batch)
        if pending:
            _log.info("batch.resumed", kind=kind, batches=len(pending))
        return pending

    async def keys_of(self, batch: LLMBatch) -> dict[str, list[str]]:
        return await self.store.get_llm_batch_requests(batch.id)

    async def submit(self, kind: BatchKind, items: Sequence[Submission]) -> LLMBatch:
        batch = LLMBatch(
            id=str(uuid.uuid4()),
            job_id=self.job_id,
            kind=kind,
            state="submitting",
            request_count=len(items),
        )
        keys = {item.request.custom_id: list(item.keys) for item in items}
        await self.store.record_llm_batch(batch, keys)
        provider_id = await self.api.create([item.request for item in items])
        # From here on a restart polls this batch: keep the window before it short.
        await self.store.update_llm_batch(
            batch.id, state="in_progress", provider_batch_id=provider_id
        )
        self.submitted += 1
        self.pulse()
        _log.info("batch.submitted", kind=kind, batch_id=provider_id, requests=len(items))
        return replace(batch, state="in_progress", provider_batch_id=provider_id)

    async def _abandon(self, batch: LLMBatch, why: str) -> Lost:
        keys = await self.store.get_llm_batch_requests(batch.id)
        await self.store.update_llm_batch(batch.id, state="abandoned")
        _log.warning("batch.abandoned", kind=batch.kind, batch_id=batch.provider_batch_id, why=why)
        return Lost(batch, tuple(k for parts in keys.values() for k in parts))

    async def ended(self, batches: Sequence[LLMBatch]) -> AsyncIterator[LLMBatch | Lost]:
        """Poll until each batch has ended, yielding each as it ends (or is found lost)."""
        waiting = list(batches)
        counts: dict[str, dict[str, int]] = {b.id: dict(b.counts) for b in waiting}
        while waiting:
            for batch in list(waiting):
                assert batch.provider_batch_id is not None
                try:
                    progress = await self.api.retrieve(batch.provider_batch_id)
                except LLMBatchNotFound:
                    waiting.remove(batch)
                    yield await self._abandon(batch, "the provider does not know it")
                    continue
                counts[batch.id] = dict(progress.counts) or counts[batch.id]
                if progress.ended:
                    await self.store.update_llm_batch(
                        batch.id, state="ended", counts=progress.counts
                    )
                    waiting.remove(batch)
                    yield replace(batch, state="ended", counts=progress.counts)
                else:
                    await self.store.update_llm_batch(
                        batch.id, state="in_progress", counts=progress.counts
                    )
            self.pulse()
            if waiting:
                await self._show(batches, waiting, counts)
                await asyncio.sleep(self.poll_s)

    async def _show(
        self,
        batches: Sequence[LLMBatch],
        waiting: Sequence[LLMBatch],
        counts: dict[str, dict[str, int]],
    ) -> None:
        """ "extract_facts: batch 2 of 3, 5,120 of 8,000 requests done" on the job."""
        done = sum(n for c in counts.values() for s, n in c.items() if s != "processing")
        requests = sum(b.request_count for b in batches)
        position = len(batches) - len(waiting) + 1
        step = _STEPS[batches[0].kind]
        await self.note(
            f"{step}: batch {position} of {len(batches)}, {done:,} of {requests:,} requests done"
        )

    async def results(self, batch: LLMBatch) -> AsyncIterator[tuple[BatchResult, list[str]]]:
        """Each result of an ended batch with the cache keys of its request's parts."""
        assert batch.provider_batch_id is not None
        keys = await self.store.get_llm_batch_requests(batch.id)
        parts = {custom_id: len(k) for custom_id, k in keys.items()}
        async for result in self.api.results(batch.provider_batch_id, kind=batch.kind, parts=parts):
            found = keys.get(result.custom_id)
            if found is None:
                _log.warning("batch.unknown_result", batch_id=batch.provider_batch_id)
                continue
            yield result, found

    async def mark_read(self, batch: LLMBatch) -> None:
        await self.store.update_llm_batch(batch.id, state="read")
