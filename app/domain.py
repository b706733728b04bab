"""The values every stage passes around. Plain, typed, immutable where they can be.

Whatever the export's source (ChatGPT or Claude.ai), later steps see only these shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "PIPELINE_VERSION",
    "PROFILE_COLUMNS",
    "SECTION_NAMES",
    "STEPS",
    "Chunk",
    "Conversation",
    "Fact",
    "FactCategory",
    "FullPassStatus",
    "Job",
    "JobStatus",
    "Message",
    "NewJob",
    "Role",
    "SignalKind",
    "UserSignal",
    "fact_from_json",
    "fact_to_json",
]

PIPELINE_VERSION = "v2"

# Step names are a contract (DESIGN §2): logs, current_step and errors use them.
STEPS: tuple[str, ...] = (
    "download_conversations",
    "chunk_conversations",
    "save_chunks",
    "extract_facts",
    "consolidate_facts",
    "hierarchical_reduce",
    "generate_memory",
    "save_memory",
    "v2_regeneration",
    "complete",
)

SECTION_NAMES: tuple[str, ...] = ("soul", "identity", "user", "agents", "tools")

# The only user_profiles columns this service writes (DESIGN §3; all created by the migrations).
PROFILE_COLUMNS: frozenset[str] = frozenset(
    {
        "full_pass_status",
        "full_pass_started_at",
        "full_pass_completed_at",
        "full_pass_error",
        "memory_md",
        "soul_md",
        "identity_md",
        "user_md",
        "agents_md",
        "tools_md",
        "soulprint_text",
    }
)

Role = Literal["user", "assistant"]
SignalKind = Literal["custom_instructions", "memory_snapshot", "bio"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    text: str
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UserSignal:
    """The user's own words about themselves, found outside the dialogue (DESIGN §7)."""

    kind: SignalKind
    text: str
    conversation_id: str
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    title: str | None
    created_at: datetime | None
    messages: tuple[Message, ...]
    signals: tuple[UserSignal, ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A slice of one conversation within the token budget.

    `id` is deterministic (user, conversation, content hash), so re-running an import upserts the
    same rows; `content_hash` keys the fact cache and depends only on the conversation's content.
    """

    id: str
    conversation_id: str
    title: str | None
    created_at: datetime | None
    index: int
    content: str
    message_count: int
    content_hash: str
    token_estimate: int
    messages: tuple[Message, ...] = ()


class FactCategory(StrEnum):
    ABOUT_ME = "About Me"
    PEOPLE = "People"
    PREFERENCES = "Preferences"
    PROJECTS = "Projects"
    IMPORTANT_DATES = "Important Dates"
    BELIEFS_VALUES = "Beliefs & Values"
    DECISIONS_CONTEXT = "Decisions & Context"


@dataclass(frozen=True, slots=True)
class Fact:
    """One self-contained sentence about the user, with where it came from."""

    category: FactCategory
    text: str
    conversation_id: str | None = None
    date: date | None = None
    from_signal: bool = False


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    # Withdrawn by an operator (issue 11): final, like complete and failed.
    CANCELED = "canceled"

    @property
    def active(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)


class FullPassStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class NewJob:
    user_id: str
    storage_path: str
    conversation_count: int | None = None
    message_count: int | None = None
    pipeline_version: str = PIPELINE_VERSION
    max_attempts: int = 3
    force: bool = False


@dataclass(frozen=True, slots=True)
class Job:
    """A row of `processing_jobs` as the service sees it."""

    id: str
    user_id: str
    status: JobStatus
    storage_path: str
    pipeline_version: str
    attempts: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    run_after: datetime | None = None
    current_step: str | None = None
    progress: int = 0
    error_message: str | None = None
    # What the job is doing in words when that is not obvious from the step: waiting for the
    # provider, queued for a retry and why, v2 skipped and why.
    note: str | None = None
    conversation_count: int | None = None
    message_count: int | None = None
    chunk_count: int | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    export_sha256: str | None = None
    llm_provider: str | None = None
    force: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    # --- issue 11: set by an operator's cancel; the runner stops the job at its next boundary.
    cancel_requested_at: datetime | None = None
    # Measured by the download (pipeline, through update_job); orders the fair queue.
    export_bytes: int | None = None


def fact_to_json(fact: Fact) -> dict[str, Any]:
    """The cache's and the job row's JSON form of a fact."""
    return {
        "category": fact.category.value,
        "text": fact.text,
        "conversation_id": fact.conversation_id,
        "date": fact.date.isoformat() if fact.date else None,
        "from_signal": fact.from_signal,
    }


def fact_from_json(data: dict[str, Any]) -> Fact:
    raw_date = data.get("date")
    return Fact(
        category=FactCategory(data["category"]),
        text=str(data["text"]),
        conversation_id=data.get("conversation_id"),
        date=date.fromisoformat(raw_date) if raw_date else None,
        from_signal=bool(data.get("from_signal", False)),
    )
