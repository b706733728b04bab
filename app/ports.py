"""What the pipeline and the runner need from the outside world, in our terms.

Adapters in `app/adapters/` implement these: `LocalStore` (SQLite, the default) and
`SupabaseStore` (PostgREST + Storage) for `Store`; `AnthropicLLM` and `OfflineLLM` for `LLM`.
Tests use the real local store or fakes that implement the whole protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from app.domain import Chunk, Fact, FactCategory, Job, JobStatus, NewJob, UserSignal
from app.operator_port import OperatorStore

__all__ = [
    "JOB_UPDATABLE_COLUMNS",
    "LLM",
    "ExportSource",
    "ExtractionRequest",
    "LLMCall",
    "LLMReply",
    "LLMUsage",
    "MemoryRequest",
    "OperatorStore",
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


class Store(ExportSource, OperatorStore, Protocol):
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
        """Idempotent upsert keyed by chunk id, in batches; never touches `embedding`."""
        ...

    async def delete_stale_chunks(self, *, user_id: str, job_id: str) -> int:
        """Remove the user's chunks not written by this job (an earlier import's leftovers)."""
        ...

    async def count_chunks(self, user_id: str) -> int: ...

    # --- fact cache ------------------------------------------------------------------------
    async def get_cached_facts(
        self, *, user_id: str, extractor_version: str, content_hashes: Sequence[str]
    ) -> dict[str, list[Fact]]:
        """Facts already extracted for these chunk contents (missing hashes are absent)."""
        ...

    async def put_cached_facts(
        self, *, user_id: str, extractor_version: str, entries: Mapping[str, Sequence[Fact]]
    ) -> None: ...


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


@dataclass(frozen=True, slots=True)
class LLMReply(Generic[T]):
    value: T
    call: LLMCall


@dataclass(frozen=True, slots=True)
class ExtractionRequest:
    """One chunk, already reduced to the text the model should see (see docs/EXTRACTION.md)."""

    chunk_id: str
    conversation_id: str
    title: str | None
    date: date | None
    text: str
    signals: tuple[UserSignal, ...] = ()


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

    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[list[Fact]]:
        """Facts about the user in this chunk, without provenance (the stage adds it)."""
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

    async def aclose(self) -> None: ...
