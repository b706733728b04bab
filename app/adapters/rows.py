"""Mapping between domain values and table rows, shared by the SQLite and Supabase stores so both
write the same columns with the same meaning."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from app.batch_port import BatchKind, BatchState, LLMBatch
from app.domain import Chunk, Job, JobStatus
from app.fleet import FailedJob, JobEvent

__all__ = [
    "RECENT_DAYS",
    "batch_from_row",
    "chunk_row",
    "event_from_row",
    "failed_job_from_row",
    "format_timestamp",
    "job_from_row",
    "parse_timestamp",
]

RECENT_DAYS = 180


def format_timestamp(moment: datetime | None) -> str | None:
    """An aware datetime → the one text shape the local store keeps (ISO-8601 UTC, microseconds):
    text order is time order, and its first 13 characters are the hour."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds") if moment else None


def parse_timestamp(value: Any) -> datetime | None:
    """ISO-8601 text (SQLite, PostgREST) or a datetime (psycopg) → an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def chunk_row(chunk: Chunk, *, user_id: str, job_id: str, now: datetime) -> dict[str, Any]:
    """The `conversation_chunks` columns this service writes. Never `embedding`: another service
    owns it, and an upsert that names only these columns leaves it as it was."""
    created = chunk.created_at
    return {
        "id": chunk.id,
        "user_id": user_id,
        "conversation_id": chunk.conversation_id,
        "title": chunk.title,
        "content": chunk.content,
        "message_count": chunk.message_count,
        "created_at": created,
        "updated_at": now,
        "is_recent": created is not None and now - created <= timedelta(days=RECENT_DAYS),
        "chunk_tier": "medium",
        "chunk_index": chunk.index,
        "content_hash": chunk.content_hash,
        "import_job_id": job_id,
    }


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _stats(raw: Any) -> dict[str, Any]:
    """The job's stats (telemetry, and checkpoints a resumed attempt skips work by). A value
    that does not read as an object reads as none: the attempt then pays again for what it
    checkpointed, where failing here would stop every claim and every read of the job."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return dict(raw) if isinstance(raw, dict) else {}


def job_from_row(row: Mapping[str, Any]) -> Job:
    stats = _stats(row.get("stats"))
    created = parse_timestamp(row.get("created_at"))
    return Job(
        id=str(row["id"]),
        user_id=str(row["user_id"]),
        status=JobStatus(row["status"]),
        storage_path=str(row["storage_path"]),
        pipeline_version=str(row.get("pipeline_version") or "v2"),
        attempts=int(row.get("attempts") or 0),
        max_attempts=int(row.get("max_attempts") or 3),
        created_at=created or datetime.now(UTC),
        updated_at=parse_timestamp(row.get("updated_at")),
        started_at=parse_timestamp(row.get("started_at")),
        completed_at=parse_timestamp(row.get("completed_at")),
        run_after=parse_timestamp(row.get("run_after")),
        current_step=row.get("current_step"),
        progress=int(row.get("progress") or 0),
        error_message=row.get("error_message"),
        note=row.get("note"),
        conversation_count=_int(row.get("conversation_count")),
        message_count=_int(row.get("message_count")),
        chunk_count=_int(row.get("chunk_count")),
        lease_owner=row.get("lease_owner"),
        lease_expires_at=parse_timestamp(row.get("lease_expires_at")),
        export_sha256=row.get("export_sha256"),
        llm_provider=row.get("llm_provider"),
        force=bool(row.get("force")),
        input_tokens=int(row.get("input_tokens") or 0),
        output_tokens=int(row.get("output_tokens") or 0),
        cost_usd=float(row.get("cost_usd") or 0),
        stats=stats,
        cancel_requested_at=parse_timestamp(row.get("cancel_requested_at")),
        export_bytes=_int(row.get("export_bytes")),
    )


# --- issue 11: the audit trail and the bulk-retry search ------------------------------------


def _json_object(value: Any) -> dict[str, Any]:
    """A JSON object column: text in SQLite, already decoded from PostgREST; null reads as {}."""
    value = value or {}
    return dict(json.loads(value) if isinstance(value, str) else value)


def event_from_row(row: Mapping[str, Any]) -> JobEvent:
    detail = _json_object(row.get("detail"))
    return JobEvent(
        id=int(row["id"]),
        job_id=str(row["job_id"]),
        user_id=str(row["user_id"]),
        kind=str(row["kind"]),
        attempt=int(row.get("attempt") or 0),
        worker_id=row.get("worker_id"),
        step=row.get("step"),
        at=parse_timestamp(row.get("at")) or datetime.now(UTC),
        detail=dict(detail),
    )


def failed_job_from_row(row: Mapping[str, Any]) -> FailedJob:
    later = row.get("later_job_id")
    return FailedJob(
        job_id=str(row["id"]),
        user_id=str(row["user_id"]),
        error_message=row.get("error_message"),
        attempts=int(row.get("attempts") or 0),
        created_at=parse_timestamp(row.get("created_at")) or datetime.now(UTC),
        failed_at=parse_timestamp(row.get("failed_at")),
        later_job_id=None if later is None else str(later),
        later_job_status=row.get("later_job_status"),
    )


# --- batch mode: llm_batches --------------------------------------------------------------------


def batch_from_row(row: Mapping[str, Any]) -> LLMBatch:
    """A row of either store (counts as JSON text or already decoded)."""
    counts = _json_object(row.get("counts"))
    return LLMBatch(
        id=str(row["id"]),
        job_id=str(row["job_id"]),
        kind=cast(BatchKind, row["kind"]),
        state=cast(BatchState, row["state"]),
        request_count=int(row["request_count"]),
        provider_batch_id=row.get("provider_batch_id"),
        counts={str(k): int(v) for k, v in counts.items()},
        created_at=parse_timestamp(row.get("created_at")),
        submitted_at=parse_timestamp(row.get("submitted_at")),
        ended_at=parse_timestamp(row.get("ended_at")),
    )
