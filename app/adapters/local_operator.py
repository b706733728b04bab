"""The operator's side of `LocalStore` (issue 11): the job event trail, cancel, the bulk-retry
search, forgetting a user, and step-duration samples — the same SQL semantics as the functions in
`supabase/migrations/20261201100000_operator_fleet.sql`, so the contract suite holds for both.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from app.adapters.rows import (
    event_from_row,
    failed_job_from_row,
    format_timestamp,
    job_from_row,
)
from app.domain import Job
from app.errors import JobConflict, JobNotFound
from app.fleet import CancelOutcome, FailedJob, FailedJobQuery, ForgetCounts, JobEvent
from app.queue_order import claim_penalty_seconds, estimated_bytes

__all__ = ["LocalOperatorStore", "install_sql_functions"]

T = TypeVar("T")


def _fold(text: str | None) -> str | None:
    # Python's lower() is Unicode-aware like PostgreSQL's lower() in a UTF-8 database; SQLite's
    # own lower() folds ASCII only.
    return None if text is None else text.lower()


def install_sql_functions(conn: sqlite3.Connection) -> None:
    """SQL functions the local queries share with the Postgres ones (app/queue_order.py)."""
    conn.create_function("fold", 1, _fold, deterministic=True)
    conn.create_function("job_estimated_bytes", 3, estimated_bytes, deterministic=True)
    conn.create_function("job_claim_penalty_seconds", 3, claim_penalty_seconds, deterministic=True)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, (name,)).fetchone() is not None


_FAILED_JOBS = """
SELECT j.id, j.user_id, j.error_message, j.attempts, j.created_at, j.completed_at AS failed_at,
       (SELECT l.id FROM processing_jobs l WHERE l.user_id = j.user_id AND l.id <> j.id
          AND (l.created_at > j.created_at OR l.status IN ('queued', 'running'))
        ORDER BY l.status IN ('queued', 'running') DESC, l.created_at DESC LIMIT 1) AS later_job_id
FROM processing_jobs j
WHERE j.status = 'failed'
  AND (:since IS NULL OR j.completed_at >= :since)
  AND (:until IS NULL OR j.completed_at < :until)
  AND (:contains IS NULL OR instr(fold(coalesce(j.error_message, '')), fold(:contains)) > 0)
  AND (:step IS NULL OR substr(coalesce(j.error_message, ''), 1, length(:step) + 2) = :step || ': ')
  AND (:user_id IS NULL OR j.user_id = :user_id)
ORDER BY j.id
"""


class LocalOperatorStore:
    """Mixed into `LocalStore`, which provides `_run` and `_write`."""

    if TYPE_CHECKING:

        async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    # --- the audit trail -------------------------------------------------------------------

    async def append_job_event(
        self,
        *,
        job_id: str,
        user_id: str,
        kind: str,
        attempt: int,
        worker_id: str | None,
        step: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        params = (
            job_id,
            user_id,
            kind,
            attempt,
            worker_id,
            step,
            format_timestamp(datetime.now(UTC)),
        )
        sql = (
            "INSERT INTO processing_job_events"
            " (job_id, user_id, kind, attempt, worker_id, step, at, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        body = json.dumps(dict(detail or {}))
        await self._write(lambda conn: conn.execute(sql, (*params, body)).close())

    async def list_job_events(self, job_id: str) -> list[JobEvent]:
        sql = "SELECT * FROM processing_job_events WHERE job_id = ? ORDER BY id"
        rows = await self._run(lambda conn: conn.execute(sql, (job_id,)).fetchall())
        return [event_from_row(dict(row)) for row in rows]

    # --- cancel ----------------------------------------------------------------------------

    async def cancel_job(self, job_id: str, *, message: str) -> tuple[Job, CancelOutcome]:
        def cancel(conn: sqlite3.Connection) -> tuple[sqlite3.Row, CancelOutcome]:
            row = conn.execute("SELECT * FROM processing_jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id}")
            status, now = row["status"], format_timestamp(datetime.now(UTC))
            if status in ("complete", "failed"):
                raise JobConflict(
                    f"job {job_id} is {status}: only a queued or running job can be canceled",
                    table="processing_jobs",
                )
            lease = row["lease_expires_at"]
            if status == "canceled":
                outcome = CancelOutcome.ALREADY_CANCELED
            elif status == "queued" or lease is None or lease < str(now):
                conn.execute(
                    "UPDATE processing_jobs SET status = 'canceled',"
                    " cancel_requested_at = COALESCE(cancel_requested_at, :now),"
                    " completed_at = :now, error_message = :message, lease_owner = NULL,"
                    " lease_expires_at = NULL, updated_at = :now WHERE id = :id",
                    {"now": now, "message": message, "id": job_id},
                )
                outcome = CancelOutcome.CANCELED
            else:
                conn.execute(
                    "UPDATE processing_jobs SET"
                    " cancel_requested_at = COALESCE(cancel_requested_at, :now),"
                    " updated_at = :now WHERE id = :id",
                    {"now": now, "id": job_id},
                )
                outcome = CancelOutcome.CANCEL_REQUESTED
            after = conn.execute("SELECT * FROM processing_jobs WHERE id = ?", (job_id,))
            return after.fetchone(), outcome

        row, outcome = await self._write(cancel)
        return job_from_row(dict(row)), outcome

    # --- the bulk-retry search -------------------------------------------------------------

    async def find_failed_jobs(self, query: FailedJobQuery) -> list[FailedJob]:
        params = {
            "since": format_timestamp(query.since),
            "until": format_timestamp(query.until),
            "contains": query.error_contains or None,
            "step": query.step or None,
            "user_id": query.user_id,
        }

        def find(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(_FAILED_JOBS, params).fetchall()
            found = [dict(row) for row in rows]
            for row in found:
                later = row["later_job_id"]
                status_row = (
                    later
                    and conn.execute(
                        "SELECT status FROM processing_jobs WHERE id = ?", (later,)
                    ).fetchone()
                )
                row["later_job_status"] = status_row[0] if status_row else None
            return found

        jobs = [failed_job_from_row(row) for row in await self._run(find)]
        return sorted(jobs, key=lambda j: (j.failed_at or j.created_at, j.job_id))

    # --- forget ----------------------------------------------------------------------------

    async def forget_user(self, user_id: str, *, include_chunks: bool = False) -> ForgetCounts:
        def forget(conn: sqlite3.Connection) -> ForgetCounts:
            active = conn.execute(
                "SELECT id, status FROM processing_jobs WHERE user_id = ?"
                " AND status IN ('queued', 'running') LIMIT 1",
                (user_id,),
            ).fetchone()
            if active is not None:
                raise JobConflict(
                    f"user {user_id} has a {active['status']} job ({active['id']}): cancel it "
                    "first, and wait until it has stopped",
                    table="processing_jobs",
                )
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM processing_jobs WHERE user_id = ?", (user_id,)
                ).fetchall()
            ]
            marks = ", ".join("?" for _ in ids) or "NULL"
            events = conn.execute(
                "DELETE FROM processing_job_events"  # noqa: S608
                f" WHERE user_id = ? OR job_id IN ({marks})",
                (user_id, *ids),
            ).rowcount
            jobs = conn.execute("DELETE FROM processing_jobs WHERE user_id = ?", (user_id,))
            cache = conn.execute("DELETE FROM fact_extraction_cache WHERE user_id = ?", (user_id,))
            chunks = 0
            if include_chunks:
                sql = "DELETE FROM conversation_chunks WHERE user_id = ?"
                chunks = conn.execute(sql, (user_id,)).rowcount
                if _has_table(conn, "conversation_chunk_imports"):  # which import they were
                    sql = "DELETE FROM conversation_chunk_imports WHERE user_id = ?"
                    conn.execute(sql, (user_id,)).close()
            return ForgetCounts(
                jobs=jobs.rowcount,
                events=events,
                fact_cache=cache.rowcount,
                chunks=chunks,
                job_ids=tuple(ids),
            )

        return await self._write(forget)

    # --- stuck detection's history ---------------------------------------------------------

    async def step_duration_samples(
        self, steps: Sequence[str], *, per_step: int = 500
    ) -> dict[str, list[tuple[float, float | None]]]:
        sql = (
            "SELECT json_extract(detail, '$.duration_ms'), json_extract(detail, '$.units')"
            " FROM processing_job_events WHERE kind = 'step_completed' AND step = ?"
            " AND json_type(detail, '$.duration_ms') IN ('integer', 'real')"
            " ORDER BY id DESC LIMIT ?"
        )
        limit = max(1, min(per_step, 5000))

        def read(conn: sqlite3.Connection) -> dict[str, list[tuple[float, float | None]]]:
            samples: dict[str, list[tuple[float, float | None]]] = {}
            for step in steps:
                rows = conn.execute(sql, (step, limit)).fetchall()
                samples[step] = [
                    (float(d), float(u) if isinstance(u, int | float) else None) for d, u in rows
                ]
            return samples

        return await self._run(read)
