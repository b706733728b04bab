"""What the pipeline and the runner need from the outside world, in our terms.

Adapters in `app/adapters/` implement these: `LocalStore` (SQLite, the default) and
`SupabaseStore` (PostgREST + Storage) for `Store`; `AnthropicLLM` and `OfflineLLM` for `LLM`.
Tests use the real local store or fakes that implement the whole protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from app.batch_port import BatchStore, MessageBatches
from app.domain import Chunk, Fact, FactCategory, Job, JobStatus, NewJob, UserSignal
from app.operator_port import OperatorStore
from app.ops_port import OpsStore

__all__ = [
    "JOB_UPDATABLE_COLUMNS",
    "LLM",
    "BatchStore",
    "Excerpt",
    "ExportSource",
    "ExtractionRequest",
    "ExtractionResult",
    "FactCacheEntry",
    "FactCacheKey",
    "LLMCall",
    "LLMReply",
    "LLMUsage",
    "MemoryRequest",
    "MessageBatches",
    "OperatorStore",
    "OpsStore",
    "ReduceRequest",
    "SectionsRequest",
    "Store",
]

T = TypeVar("T")

# Columns of processing_jobs the pipeline may set through `Store.update_job`.
JOB_UPDATABLE_COLUMNS: frozenset[str] = frozenset(
    {
        "current_step",
        "progress",
        "note",
        "conversation_count",
        "message_count",
        "chunk_count",
        "export_sha256",
        "llm_provider",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "stats",
        "export_bytes",  # issue 11: the fair queue's size, once the download measured it
    }
)


class ExportSource(Protocol):
    async def download_export(self, storage_path: str, dest: Path) -> int:
        """Stream the object at `<bucket>/<path>` into `dest`; return the byte count.

        Raises `ExportNotFound` when there is no such object. Never holds the body in memory.
        """
        ...


class Store(ExportSource, OperatorStore, BatchStore, OpsStore, Protocol):
    async def ping(self) -> None:
        """Raise `StoreUnavailable` if the store cannot be reached."""
        ...

    async def aclose(self) -> None: ...

    # --- user_profiles ---------------------------------------------------------------------
    async def update_profile(self, user_id: str, fields: Mapping[str, Any]) -> None:
        """PATCH the user's profile. Only `PROFILE_COLUMNS` may be written.

        Raises `ProfileNotFound` when no row matched: a silent no-op write loses data.
        """
        ...

    async def get_profile_status(self, user_id: str) -> dict[str, Any] | None:
        """The `full_pass_*` columns of the user's profile, or None when there is no row."""
        ...

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """`user_id` and every column this service writes (`PROFILE_COLUMNS`), or None."""
        ...

    # --- processing_jobs -------------------------------------------------------------------
    async def enqueue_job(self, new: NewJob) -> tuple[Job, bool]:
        """Create a queued job, or return the user's active (queued/running) one.

        Returns `(job, created)`. At most one active job per user, enforced by the store.
        """
        ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def latest_job_for_user(self, user_id: str) -> Job | None: ...

    async def last_finished_job(self, user_id: str) -> Job | None:
        """The user's most recently finished (complete or failed) job: whose results the
        profile holds now."""
        ...

    async def claim_job(
        self, *, worker_id: str, lease_seconds: int, small_only: bool = False
    ) -> Job | None:
        """Take the first due job (queued and due, or running with an expired lease) in the fair
        order of `app/queue_order.py`: `run_after` + a size penalty, then the oldest.

        Sets lease owner and expiry, status running, and counts the attempt. Never hands the same
        job to two workers at once. `small_only` takes only jobs of at most `SMALL_JOB_BYTES`
        (estimated): a slot small imports can count on while a big one runs.
        """
        ...

    async def renew_lease(self, *, job_id: str, worker_id: str, lease_seconds: int) -> bool:
        """Extend the lease; False if this worker no longer holds it."""
        ...

    async def finish_job(
        self,
        *,
        job_id: str,
        worker_id: str,
        status: JobStatus,
        error_message: str | None = None,
        run_after: datetime | None = None,
        count_attempt: bool = True,
    ) -> bool:
        """End this worker's hold on the job.

        `complete`/`failed`/`canceled` are final (completed_at set). `queued` puts it back on the
        queue, due at `run_after`; with `count_attempt=False` (a release on shutdown) the attempt
        is given back. False if this worker no longer held the lease (nothing was changed).
        """
        ...

    async def requeue_job(self, job_id: str) -> Job:
        """Put a failed job back on the queue with its attempts reset (operator retry)."""
        ...

    async def update_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """Set progress columns; only `JOB_UPDATABLE_COLUMNS`."""
        ...

    async def count_jobs_by_status(self) -> dict[str, int]:
        """How many jobs are queued, running, complete and failed (every status present)."""
        ...

    # --- conversation_chunks ---------------------------------------------------------------
    async def upsert_chunks(self, *, user_id: str, job_id: str, chunks: Sequence[Chunk]) -> None:
        """Idempotent upsert keyed by chunk id, in batches; never touches `embedding`.

        Rows are tagged with `job_id`; a row an earlier import wrote remembers that import, so
        `rollback_chunks` can give it back. Duplicate ids in `chunks` are written once.
        """
        ...

    async def commit_chunks(self, *, user_id: str, job_id: str) -> int:
        """The import is whole: its rows become the user's chunks, all others are removed
        (atomically with recording the commit). Returns the rows removed."""
        ...

    async def rollback_chunks(self, *, user_id: str, job_id: str) -> tuple[int, int]:
        """The import failed for good before its commit: remove the rows it created and give
        re-tagged rows back to their earlier import. No-op once committed.
        Returns (removed, restored)."""
        ...

    async def count_chunks(self, user_id: str) -> int: ...

    # --- fact cache ------------------------------------------------------------------------
    async def get_cached_facts(
        self, *, user_id: str, extractor_version: str, content_hashes: Sequence[str]
    ) -> dict[str, list[Fact]]:
        """Facts already extracted for these chunk contents (missing hashes are absent).

        An entry whose facts do not decode is absent too (a miss, logged as
        `fact_cache.invalid_entry`), so the chunk is extracted again and the entry replaced.
        """
        ...

    async def put_cached_facts(
        self, *, user_id: str, extractor_version: str, entries: Mapping[str, Sequence[Fact]]
    ) -> None:
        """Upsert: an entry for the same key (an invalid one included) is replaced."""
        ...

    def scan_fact_cache(
        self, *, user_id: str | None = None, page_size: int = 500
    ) -> AsyncIterator[list[FactCacheEntry]]:
        """Every entry (of one user, or of all users) in key order, one bounded read per page,
        each saying whether its facts decode. Deleting entries already seen does not disturb it."""
        ...

    async def delete_fact_cache_entries(self, keys: Sequence[FactCacheKey]) -> int:
        """Delete these entries in bounded batches; returns how many there were."""
        ...


# --- fact cache entries (for scans and repairs: `python -m app cache`) ----------------------


@dataclass(frozen=True, slots=True)
class FactCacheKey:
    user_id: str
    content_hash: str
    extractor_version: str


@dataclass(frozen=True, slots=True)
class FactCacheEntry:
    """One cached entry as a scan sees it: its key, and why its facts are unusable (`problem`,
    a kind such as `not_json` or `unknown_category`; None when they decode)."""

    key: FactCacheKey
    problem: str | None = None


# --- LLM -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LLMUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


@dataclass(frozen=True, slots=True)
class LLMCall:
    """What one call cost and how to find it in the vendor's logs."""

    task: str
    model: str
    usage: LLMUsage = field(default_factory=LLMUsage)
    request_id: str | None = None
    retries: int = 0
    duration_ms: int = 0
    batch: bool = False  # answered through a Message Batch: billed at BATCH_DISCOUNT


@dataclass(frozen=True, slots=True)
class LLMReply(Generic[T]):
    value: T
    call: LLMCall


@dataclass(frozen=True, slots=True)
class Excerpt:
    """One chunk (or one batch of the user's signals), already reduced to the text the model
    should see (see docs/EXTRACTION.md), with the provenance its facts will carry."""

    chunk_id: str
    conversation_id: str
    title: str | None
    date: date | None
    text: str
    signals: tuple[UserSignal, ...] = ()


@dataclass(frozen=True, slots=True)
class ExtractionRequest:
    """One extraction request: several excerpts packed together, each delimited with its own id
    (its position, 1…n) and date, so the model attributes every fact to its excerpt."""

    excerpts: tuple[Excerpt, ...]

    @classmethod
    def of(cls, *excerpts: Excerpt) -> ExtractionRequest:
        return cls(tuple(excerpts))


@dataclass(frozen=True, slots=True)
class ExtractionResult:
    """Facts per excerpt, aligned with the request's excerpts (without provenance: the stage adds
    it). `None` where the reply said nothing about an excerpt (it is asked about again, alone);
    `unknown` counts entries naming an excerpt the request did not hold (dropped)."""

    facts: tuple[list[Fact] | None, ...]
    unknown: int = 0


@dataclass(frozen=True, slots=True)
class ReduceRequest:
    category: FactCategory
    facts: tuple[str, ...]
    target_count: int


@dataclass(frozen=True, slots=True)
class MemoryRequest:
    facts: tuple[Fact, ...]
    correction: str | None = None


@dataclass(frozen=True, slots=True)
class SectionsRequest:
    conversations: str
    memory_md: str
    correction: str | None = None


class LLM(Protocol):
    @property
    def provider(self) -> str:
        """`anthropic` or `offline`: recorded on the job."""
        ...

    @property
    def model(self) -> str: ...

    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[ExtractionResult]:
        """Facts about the user in each excerpt of the request, without provenance."""
        ...

    async def reduce_facts(self, request: ReduceRequest) -> LLMReply[list[str]]:
        """Merge one category's facts into at most `target_count` sentences."""
        ...

    async def write_memory(self, request: MemoryRequest) -> LLMReply[str]:
        """MEMORY markdown with the DESIGN §7 headings."""
        ...

    async def write_sections(self, request: SectionsRequest) -> LLMReply[dict[str, Any]]:
        """The five sections as raw JSON (validated by the stage)."""
        ...

    def batches(self) -> MessageBatches | None:
        """The provider's Message Batches API (`LLM_MODE=batch`), None when it has none."""
        ...

    async def probe(self) -> None:
        """Return when the provider answers; raise `LLMUnavailable` while it does not.

        The cheapest request that proves the provider is back (the breaker's probe)."""
        ...

    async def aclose(self) -> None: ...
