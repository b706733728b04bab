"""Request and response bodies of the HTTP API (DESIGN §5)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from app.domain import Job

__all__ = [
    "ErrorBody",
    "ErrorResponse",
    "FullPassView",
    "JobView",
    "ProcessAccepted",
    "ProcessRequest",
]


class ProcessRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    user_id: UUID
    storage_path: str = Field(
        min_length=5,
        max_length=1024,
        # Documented for clients and fuzzers; enforced by validate_storage_path, which says why.
        json_schema_extra={"pattern": r"^[^/]+/[^/]+/.+$"},
        description="`<bucket>/<user_id>/<file>`: an allowed bucket, inside the user's own folder",
        examples=["imports/5b0f3c52-8f3a-4c47-9a55-2f6a1f0e9d11/1700000000-conversations.json"],
    )
    conversation_count: int | None = Field(default=None, ge=0)
    message_count: int | None = Field(default=None, ge=0)
    force: bool = Field(default=False, description="Run again even if this export completed.")


class JobView(BaseModel):
    job_id: str
    user_id: str
    status: str
    pipeline_version: str
    current_step: str | None
    progress: int
    error: str | None
    note: str | None = Field(
        default=None,
        description="What the job is doing in words: waiting for the provider, queued to retry.",
    )
    attempts: int
    max_attempts: int
    conversation_count: int | None
    message_count: int | None
    chunk_count: int | None
    llm_provider: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    stats: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime | None
    cancel_requested_at: datetime | None = Field(
        default=None, description="Set when an operator asked a running job to stop."
    )
    export_bytes: int | None = Field(default=None, description="The export's measured size.")

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(
            job_id=job.id,
            user_id=job.user_id,
            status=job.status.value,
            pipeline_version=job.pipeline_version,
            current_step=job.current_step,
            progress=job.progress,
            error=job.error_message,
            note=job.note,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            conversation_count=job.conversation_count,
            message_count=job.message_count,
            chunk_count=job.chunk_count,
            llm_provider=job.llm_provider,
            input_tokens=job.input_tokens,
            output_tokens=job.output_tokens,
            cost_usd=job.cost_usd,
            stats=job.stats,
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            updated_at=job.updated_at,
            cancel_requested_at=job.cancel_requested_at,
            export_bytes=job.export_bytes,
        )


class ProcessAccepted(BaseModel):
    status: Literal["processing"] = "processing"
    version: Literal["v2"] = "v2"
    job_id: str
    user_id: str
    created: bool = Field(description="False when the user's active job was returned instead.")
    job: JobView


class FullPassView(BaseModel):
    user_id: str
    full_pass_status: str | None
    full_pass_started_at: datetime | None
    full_pass_completed_at: datetime | None
    full_pass_error: str | None
    job: JobView | None


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
