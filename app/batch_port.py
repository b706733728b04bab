"""What batch mode (`LLM_MODE=batch`) needs from a provider and from a store, kept apart from
`app/ports.py` (which re-exports it: `Store` includes `BatchStore`, `LLM.batches()` gives a
`MessageBatches`).

A Message Batch is a set of requests the provider answers within 24 hours at half the price.
Its id is recorded on the job (`llm_batches`), with each request's `custom_id` and the cache
keys its answer is filed under (`llm_batch_requests`), so whichever process reads the results
— the one that submitted them, or the one that resumed the job after a deploy — can split
them into the cache, and a resumed job polls the same batch instead of submitting it again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from app.errors import LLMError
    from app.ports import ExtractionRequest, ExtractionResult, LLMCall, ReduceRequest

__all__ = [
    "BatchKind",
    "BatchProgress",
    "BatchRequest",
    "BatchResult",
    "BatchState",
    "BatchStore",
    "LLMBatch",
    "MessageBatches",
    "ResultKind",
]

BatchKind = Literal["extract", "reduce"]
# submitting: recorded, not yet known to the provider (a crash here is the one window where a
# batch can be paid twice: docs/EXTRACTION.md); in_progress / ended: the provider's; read: its
# results are in the cache (its request rows are gone); abandoned: never submitted, or given up.
BatchState = Literal["submitting", "in_progress", "ended", "read", "abandoned"]
ResultKind = Literal["succeeded", "errored", "canceled", "expired"]
REQUEST_STATES: tuple[ResultKind | Literal["processing"], ...] = (
    "processing",
    "succeeded",
    "errored",
    "canceled",
    "expired",
)


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request of a batch: `custom_id` (unique in the batch) and what to ask."""

    custom_id: str
    request: ExtractionRequest | ReduceRequest


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """The provider's view of a batch: ended or not, and its requests by state."""

    ended: bool
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(n for state, n in self.counts.items() if state != "processing")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One request's result. `succeeded` with `value` (an `ExtractionResult` or the reduced
    sentences) and the billed `call`; `succeeded` with `error` when the reply was billed but is
    unusable (cut at max_tokens, not the schema, refused); `errored` with `error`; `canceled`
    and `expired` with neither (not billed)."""

    custom_id: str
    kind: ResultKind
    value: ExtractionResult | list[str] | None = None
    call: LLMCall | None = None
    error: LLMError | None = None


class MessageBatches(Protocol):
    """A provider's Message Batches API, in our terms. Every call may raise what a task call
    raises (`LLMUnavailable` while the provider does not answer: the breaker waits it out), and
    `LLMBatchNotFound` for a batch the provider no longer has."""

    async def create(self, requests: Sequence[BatchRequest]) -> str:
        """Submit the requests as one batch; its provider id."""
        ...

    async def retrieve(self, batch_id: str) -> BatchProgress: ...

    def results(
        self, batch_id: str, *, kind: BatchKind, parts: Mapping[str, int]
    ) -> AsyncIterator[BatchResult]:
        """Every request's result (in any order), once the batch has ended. `parts` gives, per
        custom_id, the excerpts its request held (1 for a reduce request): what a reply is read
        against, known from the store when the reader is not the process that submitted."""
        ...

    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to stop; unfinished requests end `canceled`."""
        ...


@dataclass(frozen=True, slots=True)
class LLMBatch:
    """A row of `llm_batches`: one Message Batch of a job."""

    id: str  # ours (a uuid), known before the provider's
    job_id: str
    kind: BatchKind
    state: BatchState
    request_count: int
    provider_batch_id: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)  # last polled request_counts
    created_at: datetime | None = None
    submitted_at: datetime | None = None
    ended_at: datetime | None = None


class BatchStore(Protocol):
    """The job's Message Batches (`llm_batches`, `llm_batch_requests`)."""

    async def record_llm_batch(
        self, batch: LLMBatch, requests: Mapping[str, Sequence[str]]
    ) -> None:
        """Record a batch about to be submitted (state `submitting`) with, per custom_id, the
        cache keys of its request's parts in order — atomically: all or nothing."""
        ...

    async def update_llm_batch(
        self,
        batch_id: str,
        *,
        state: BatchState,
        provider_batch_id: str | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        """Move a batch on: `in_progress` sets `submitted_at` (with the provider's id), `ended`
        sets `ended_at`; `read` and `abandoned` also delete its request rows (they are done
        with). `counts` replaces the last polled counts. Unknown id: `StoreError`."""
        ...

    async def list_llm_batches(self, job_id: str) -> list[LLMBatch]:
        """The job's batches, oldest first."""
        ...

    async def get_llm_batch_requests(self, batch_id: str) -> dict[str, list[str]]:
        """custom_id → cache keys in order, for every request of the batch (paged reads)."""
        ...
