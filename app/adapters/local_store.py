"""The embedded default store (DESIGN §9): SQLite at `<data_dir>/soulprint.db`, exports at
`<data_dir>/storage/<bucket>/<path>`.

It behaves like the Supabase store for everything the pipeline uses; the contract suite runs the
same tests against both. Calls run in a worker thread so a slow disk never stalls heartbeats, and
job claims take SQLite's write lock (`BEGIN IMMEDIATE`) so several processes can share one file.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from app.adapters.delegates import BatchMethods, FactCacheMethods
from app.adapters.local_batches import LocalBatches
from app.adapters.local_chunks import LocalChunkStore
from app.adapters.local_fact_cache import LocalFactCache
from app.adapters.local_operator import LocalOperatorStore, install_sql_functions
from app.adapters.local_ops import LocalOpsStore
from app.adapters.local_schema_upgrade import upgrade_local_schema
from app.adapters.rows import format_timestamp, job_from_row
from app.domain import (
    PROFILE_COLUMNS,
    Job,
    JobStatus,
    NewJob,
)
from app.errors import ExportNotFound, JobConflict, JobNotFound, ProfileNotFound, StoreError
from app.ports import JOB_UPDATABLE_COLUMNS
from app.queue_order import SMALL_JOB_BYTES

__all__ = ["LocalStore"]

T = TypeVar("T")
_COPY_BLOCK = 1024 * 1024
_PROFILE_STATUS_COLUMNS = (
    "full_pass_status",
    "full_pass_started_at",
    "full_pass_completed_at",
    "full_pass_error",
)


def _now() -> datetime:
    return datetime.now(UTC)


class LocalStore(
    FactCacheMethods, BatchMethods, LocalChunkStore, LocalOperatorStore, LocalOpsStore
):
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.storage_dir = data_dir / "storage"
        self.db_path = data_dir / "soulprint.db"
        self._lock = threading.Lock()
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            self.db_path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        schema = resources.files("app.adapters").joinpath("local_schema.sql").read_text()
        upgrade_local_schema(self._conn, schema)  # a file from an older version: catch it up
        self._conn.executescript(schema)
        self._fact_cache = LocalFactCache(run=self._run, write=self._write)
        self._batches = LocalBatches(run=self._run, write=self._write)
        install_sql_functions(self._conn)

    # --- plumbing --------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                result = fn(self._conn)
                if isinstance(result, sqlite3.Cursor):
                    # Freed later on another thread, a cursor races the next statement on this
                    # connection ("bad parameter or other API misuse"): never let one out.
                    result.close()
                    raise TypeError("a LocalStore call returned a cursor; close it inside")
                return result

        return await asyncio.to_thread(locked)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` inside one IMMEDIATE transaction: other processes wait, nothing interleaves."""

        def tx(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._run(tx)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def aclose(self) -> None:
        with self._lock:
            self._conn.close()

    # --- exports ---------------------------------------------------------------------------

    def export_path(self, storage_path: str) -> Path:
        """Where `<bucket>/<path>` lives on disk; refuses anything outside the storage folder.

        The folder is checked, not the file: the file itself may be a link the owner of the data
        directory put there (`put_export(link=True)`).
        """
        root = self.storage_dir.resolve()
        target = root / storage_path.lstrip("/")
        if ".." in target.parts or not target.parent.resolve().is_relative_to(root):
            raise ExportNotFound(f"export path {storage_path!r} is outside local storage")
        return target

    async def download_export(self, storage_path: str, dest: Path) -> int:
        source = self.export_path(storage_path)
        if not source.is_file():
            raise ExportNotFound(
                f"no export at {storage_path!r} in local storage (LOCAL_DATA_DIR/storage): "
                "upload the file there or check storage_path"
            )

        def copy() -> int:
            with source.open("rb") as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, _COPY_BLOCK)
            return dest.stat().st_size

        return await asyncio.to_thread(copy)

    def put_export(self, storage_path: str, source: Path, *, link: bool = False) -> Path:
        """Place a file where `storage_path` points (local use and tests); `link` avoids copying
        a multi-gigabyte export that is already on this disk."""
        target = self.export_path(storage_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        if link:
            target.symlink_to(source.resolve())
        else:
            shutil.copyfile(source, target)
        return target

    # --- user_profiles ---------------------------------------------------------------------

    async def ensure_profile(self, user_id: str) -> None:
        """Create an empty profile row (the product does this in Supabase; locally we must)."""
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO user_profiles (user_id) VALUES (?)", (user_id,)
            ).close()
        )

    async def update_profile(self, user_id: str, fields: Mapping[str, Any]) -> None:
        unknown = set(fields) - PROFILE_COLUMNS
        if unknown:
            raise StoreError(
                f"user_profiles has no column(s) {sorted(unknown)}; refusing the write",
                table="user_profiles",
            )
        if not fields:
            return
        values = {
            k: format_timestamp(v) if isinstance(v, datetime) else v for k, v in fields.items()
        }
        assignments = ", ".join(f"{column} = :{column}" for column in values)
        sql = f"UPDATE user_profiles SET {assignments} WHERE user_id = :_user_id"  # noqa: S608

        def update(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, {**values, "_user_id": user_id}).rowcount

        if await self._write(update) == 0:
            raise ProfileNotFound(
                f"no user_profiles row for user {user_id}: create the profile, then retry",
                table="user_profiles",
            )

    async def get_profile_status(self, user_id: str) -> dict[str, Any] | None:
        row = await self.get_profile(user_id)
        return None if row is None else {k: row[k] for k in _PROFILE_STATUS_COLUMNS}

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        def read(conn: sqlite3.Connection) -> sqlite3.Row | None:
            sql = "SELECT * FROM user_profiles WHERE user_id = ?"
            row: sqlite3.Row | None = conn.execute(sql, (user_id,)).fetchone()
            return row

        row = await self._run(read)
        return None if row is None else dict(row)

    # --- processing_jobs -------------------------------------------------------------------

    async def enqueue_job(self, new: NewJob) -> tuple[Job, bool]:
        def enqueue(conn: sqlite3.Connection) -> tuple[sqlite3.Row, bool]:
            active = conn.execute(
                "SELECT * FROM processing_jobs WHERE user_id = ? "
                "AND status IN ('queued', 'running')",
                (new.user_id,),
            ).fetchone()
            if active is not None:
                return active, False
            now = format_timestamp(_now())
            job_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO processing_jobs (id, user_id, status, storage_path, pipeline_version,"
                " conversation_count, message_count, max_attempts, force, run_after, created_at,"
                " updated_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    new.user_id,
                    new.storage_path,
                    new.pipeline_version,
                    new.conversation_count,
                    new.message_count,
                    new.max_attempts,
                    int(new.force),
                    now,
                    now,
                    now,
                ),
            )
            created = conn.execute("SELECT * FROM processing_jobs WHERE id = ?", (job_id,))
            return created.fetchone(), True

        row, created = await self._write(enqueue)
        return job_from_row(dict(row)), created

    async def get_job(self, job_id: str) -> Job | None:
        return await self._one_job("SELECT * FROM processing_jobs WHERE id = ?", (job_id,))

    async def latest_job_for_user(self, user_id: str) -> Job | None:
        return await self._one_job(
            "SELECT * FROM processing_jobs WHERE user_id = ? ORDER BY created_at DESC LIMIT 1",
            (user_id,),
        )

    async def last_finished_job(self, user_id: str) -> Job | None:
        return await self._one_job(
            "SELECT * FROM processing_jobs WHERE user_id = ? AND status IN ('complete', 'failed')"
            " ORDER BY completed_at DESC LIMIT 1",
            (user_id,),
        )

    async def _one_job(self, sql: str, params: tuple[Any, ...]) -> Job | None:
        row = await self._run(lambda conn: conn.execute(sql, params).fetchone())
        return None if row is None else job_from_row(dict(row))

    async def claim_job(
        self, *, worker_id: str, lease_seconds: int, small_only: bool = False
    ) -> Job | None:
        def claim(conn: sqlite3.Connection) -> sqlite3.Row | None:
            now = _now()
            # The fair order of app/queue_order.py: run_after + a size penalty, then the oldest.
            row = conn.execute(
                "SELECT id FROM processing_jobs WHERE ((status = 'queued' AND run_after <= :now)"
                " OR (status = 'running' AND lease_expires_at < :now"
                " AND lease_owner IS NOT :owner))"
                " AND (NOT :small_only OR job_estimated_bytes(export_bytes, message_count,"
                " conversation_count) <= :small_bytes)"
                " ORDER BY julianday(run_after) * 86400.0 + job_claim_penalty_seconds("
                "export_bytes, message_count, conversation_count), created_at, id LIMIT 1",
                {
                    "now": format_timestamp(now),
                    "small_only": small_only,
                    "small_bytes": SMALL_JOB_BYTES,
                    "owner": worker_id,
                },
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE processing_jobs SET status = 'running', lease_owner = :owner,"
                " lease_expires_at = :expires, heartbeat_at = :now, attempts = attempts + 1,"
                " started_at = COALESCE(started_at, :now), updated_at = :now WHERE id = :id",
                {
                    "owner": worker_id,
                    "expires": format_timestamp(now + timedelta(seconds=lease_seconds)),
                    "now": format_timestamp(now),
                    "id": row["id"],
                },
            )
            claimed: sqlite3.Row = conn.execute(
                "SELECT * FROM processing_jobs WHERE id = ?", (row["id"],)
            ).fetchone()
            return claimed

        row = await self._write(claim)
        return None if row is None else job_from_row(dict(row))

    async def renew_lease(self, *, job_id: str, worker_id: str, lease_seconds: int) -> bool:
        now = _now()
        params = {
            "expires": format_timestamp(now + timedelta(seconds=lease_seconds)),
            "now": format_timestamp(now),
            "id": job_id,
            "owner": worker_id,
        }

        def renew(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE processing_jobs SET lease_expires_at = :expires, heartbeat_at = :now,"
                " updated_at = :now WHERE id = :id AND lease_owner = :owner"
                " AND status = 'running'",
                params,
            ).rowcount

        return await self._write(renew) == 1

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
        now = _now()
        params: dict[str, Any] = {
            "id": job_id,
            "owner": worker_id,
            "status": status.value,
            "error": error_message,
            "now": format_timestamp(now),
        }
        if status is JobStatus.QUEUED:
            # Back in the queue: in no step, progress from zero (its paid work is cached).
            sql = (
                "UPDATE processing_jobs SET status = 'queued', lease_owner = NULL,"
                " lease_expires_at = NULL, run_after = :run_after, error_message = :error,"
                " attempts = attempts - :give_back, current_step = NULL, progress = 0,"
                " updated_at = :now WHERE id = :id AND lease_owner = :owner AND status = 'running'"
            )
            params |= {
                "run_after": format_timestamp(run_after or now),
                "give_back": 0 if count_attempt else 1,
            }
        elif status in (JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELED):
            sql = (
                "UPDATE processing_jobs SET status = :status, lease_owner = NULL,"
                " lease_expires_at = NULL, error_message = :error, completed_at = :now,"
                " updated_at = :now,"
                " progress = CASE WHEN :status = 'complete' THEN 100 ELSE progress END"
                " WHERE id = :id AND lease_owner = :owner AND status = 'running'"
            )
        else:
            raise ValueError(f"a job cannot be finished as {status.value!r}")
        return await self._write(lambda conn: conn.execute(sql, params).rowcount) == 1

    async def requeue_job(self, job_id: str) -> Job:
        def requeue(conn: sqlite3.Connection) -> sqlite3.Row:
            row = conn.execute("SELECT * FROM processing_jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id}")
            if row["status"] != JobStatus.FAILED.value:
                raise JobConflict(
                    f"job {job_id} is {row['status']}: only a failed job can be retried",
                    table="processing_jobs",
                )
            now = format_timestamp(_now())
            conn.execute(
                "UPDATE processing_jobs SET status = 'queued', attempts = 0, error_message = NULL,"
                " run_after = ?, completed_at = NULL, cancel_requested_at = NULL, updated_at = ?"
                " WHERE id = ?",
                (now, now, job_id),
            )
            requeued: sqlite3.Row = conn.execute(
                "SELECT * FROM processing_jobs WHERE id = ?", (job_id,)
            ).fetchone()
            return requeued

        try:
            return job_from_row(dict(await self._write(requeue)))
        except sqlite3.IntegrityError as exc:
            raise JobConflict(
                "the user already has an active job; wait for it to finish before retrying",
                table="processing_jobs",
            ) from exc

    async def update_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        unknown = set(fields) - JOB_UPDATABLE_COLUMNS
        if unknown:
            raise StoreError(
                f"processing_jobs has no updatable column(s) {sorted(unknown)}",
                table="processing_jobs",
            )
        values = {k: json.dumps(v) if k == "stats" else v for k, v in fields.items()}
        values["updated_at"] = format_timestamp(_now())
        assignments = ", ".join(f"{column} = :{column}" for column in values)
        sql = f"UPDATE processing_jobs SET {assignments} WHERE id = :_id"  # noqa: S608
        params = {**values, "_id": job_id}
        if await self._write(lambda conn: conn.execute(sql, params).rowcount) == 0:
            raise JobNotFound(f"no job {job_id}")

    async def count_jobs_by_status(self) -> dict[str, int]:
        sql = "SELECT status, COUNT(*) FROM processing_jobs GROUP BY status"
        rows = await self._run(lambda conn: conn.execute(sql).fetchall())
        counts = {status.value: 0 for status in JobStatus}
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts
