"""The fair claim order (issue 11): priority by size, with aging so nothing waits forever.

A due job's place in line is `run_after + penalty`, where the penalty grows with the job's
expected size — 3.6 s per MB, at most one hour (a 1 GB export). So a small import that arrives
while a big one waits goes first, but only for an hour: after that the big job's place comes
before every newcomer's. The size is `export_bytes` once the download measured it, else an
estimate from the request's `message_count` / `conversation_count` hints; a job of unknown size
counts as small until known.

The same rules are SQL in `supabase/migrations/20261201100000_operator_fleet.sql`
(`job_estimated_bytes`, `job_claim_penalty_seconds`); the local store calls these functions.
`tests/test_migrations.py` checks that both give the same numbers.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "MAX_PENALTY_SECONDS",
    "MB",
    "SECONDS_PER_MB",
    "SMALL_JOB_BYTES",
    "claim_penalty_seconds",
    "estimated_bytes",
    "size_class",
]

MB = 1024 * 1024
SECONDS_PER_MB = 3.6
MAX_PENALTY_SECONDS = 3600.0
# A job at or under this size may take a small-job slot (`claim_job(small_only=True)`).
SMALL_JOB_BYTES = 25 * MB
# Hint ratios, measured on generated exports (docs/INGESTION.md: 10 MB ≈ 412 conversations,
# 7,202 messages); real ChatGPT JSON carries more metadata per message, so these underestimate.
BYTES_PER_MESSAGE = 1_500
BYTES_PER_CONVERSATION = 25_000


def estimated_bytes(
    export_bytes: int | None, message_count: int | None, conversation_count: int | None
) -> int:
    """The measured size, else the larger of the two hints' estimates, else 0 (small)."""
    if export_bytes is not None:
        return max(0, export_bytes)
    by_messages = max(0, message_count or 0) * BYTES_PER_MESSAGE
    by_conversations = max(0, conversation_count or 0) * BYTES_PER_CONVERSATION
    return max(by_messages, by_conversations)


def claim_penalty_seconds(
    export_bytes: int | None, message_count: int | None, conversation_count: int | None
) -> float:
    size = estimated_bytes(export_bytes, message_count, conversation_count)
    return min(MAX_PENALTY_SECONDS, size / MB * SECONDS_PER_MB)


def size_class(
    export_bytes: int | None, message_count: int | None, conversation_count: int | None
) -> Literal["small", "large"]:
    size = estimated_bytes(export_bytes, message_count, conversation_count)
    return "small" if size <= SMALL_JOB_BYTES else "large"
