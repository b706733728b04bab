"""`Store` over Supabase: PostgREST for rows and job RPCs, Storage for exports (DESIGN §9).

Only columns the migrations create are ever written (checked here before any request); chunk and
fact-cache writes are idempotent upserts in small batches; jobs move only through the SQL functions
in supabase/migrations, which hold the queue's guarantees (leases, SKIP LOCKED, one active job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from app.adapters.delegates import BatchMethods, FactCacheMethods
from app.adapters.postgrest import PostgrestError, SupabaseHttp, is_uuid, jsonable
from app.adapters.rows import chunk_row, job_from_row
from app.adapters.supabase_batches import SupabaseBatches
from app.adapters.supabase_fact_cache import SupabaseFactCache
from app.adapters.supabase_operator import SupabaseOperatorStore, job_rpc
from app.adapters.supabase_ops import SupabaseOpsStore
from app.config import Settings
from app.domain import (
    PROFILE_COLUMNS,
    Chunk,
    Job,
    JobStatus,
    NewJob,
)
from app.errors import (
    ConfigError,
    JobConflict,
    JobNotFound,
    ProfileNotFound,
    StoreError,
    StoreUnavailable,
)
from app.ports import JOB_UPDATABLE_COLUMNS

__all__ = ["PROFILE_STATUS_COLUMNS", "SupabaseStore"]

PROFILE_STATUS_COLUMNS = (
    "full_pass_status",
    "full_pass_started_at",
    "full_pass_completed_at",
    "full_pass_error",
)
_WRITE_BLOCK = 1024 * 1024
# Columns `save_conversation_chunks` sets itself (from its arguments), not from the rows.
_SET_BY_FUNCTION = frozenset({"user_id", "import_job_id"})
_CONFLICT_RETRIES = 3
_FINAL_OR_QUEUED = frozenset(
    {JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.QUEUED}
)


def _refuse_unknown(fields: Mapping[str, Any], allowed: frozenset[str], *, table: str) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise StoreError(
            f"{table} has no writable column(s) {unknown}; refusing the write "
            f"(allowed: {sorted(allowed)})",
            table=table,
        )


class SupabaseStore(FactCacheMethods, BatchMethods, SupabaseOperatorStore, SupabaseOpsStore):
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        url: str,
        service_key: str,
        max_retries: int = 3,
        chunk_batch_size: int = 100,
        retry_base_delay: float = 0.5,
        owns_client: bool = False,
    ) -> None:
        self._http = SupabaseHttp(
            client,
            base_url=url,
            service_key=service_key,
            max_retries=max_retries,
            retry_base_delay=retry_base_delay,
        )
        self._batch = chunk_batch_size
        self._fact_cache = SupabaseFactCache(self._http, batch_size=chunk_batch_size)
        self._batches = SupabaseBatches(self._http)
        self._owns_client = owns_client

    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseStore:
        """Build the store with its own long-lived client, closed by `aclose()`."""
        if not settings.supabase_url or settings.supabase_service_key is None:
            raise ConfigError(
                "the Supabase store needs SUPABASE_URL and SUPABASE_SERVICE_KEY; set both, "
                "or unset SUPABASE_URL to use the local store"
            )
        timeout = httpx.Timeout(settings.supabase_timeout_seconds, connect=10.0)
        client = httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=20, max_keepalive_connections=10)
        )
        return cls(
            client,
            url=settings.supabase_url,
            service_key=settings.supabase_service_key.get_secret_value(),
            max_retries=settings.supabase_max_retries,
            chunk_batch_size=settings.chunk_batch_size,
            owns_client=True,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.client.aclose()

    async def ping(self) -> None:
        await self._http.request(
            "GET",
            "/rest/v1/processing_jobs",
            table="processing_jobs",
            action="ping",
            params={"select": "id", "limit": "1"},
        )

    # --- helpers ---------------------------------------------------------------------------

    async def _patch(self, table: str, *, key: str, value: str, body: Mapping[str, Any]) -> int:
        """PATCH one row by key; the representation tells whether a row matched at all."""
        response = await self._http.request(
            "PATCH",
            f"/rest/v1/{table}",
            table=table,
            action="update",
            params={key: f"eq.{value}", "select": key},
            json={k: jsonable(v) for k, v in body.items()},
            headers={"Prefer": "return=representation"},
        )
        return len(response.json())

    async def _upsert(self, table: str, *, on_conflict: str, rows: list[dict[str, Any]]) -> None:
        columns = ",".join(rows[0])
        await self._http.request(
            "POST",
            f"/rest/v1/{table}",
            table=table,
            action="upsert",
            params={"on_conflict": on_conflict, "columns": columns},
            json=rows,
            headers={"Prefer": "resolution=merge-duplicates,return=minimal"},
        )

    # --- user_profiles ---------------------------------------------------------------------

    async def update_profile(self, user_id: str, fields: Mapping[str, Any]) -> None:
        _refuse_unknown(fields, PROFILE_COLUMNS, table="user_profiles")
        if not fields:
            return
        if not is_uuid(user_id) or not await self._patch(
            "user_profiles", key="user_id", value=user_id, body=fields
        ):
            raise ProfileNotFound(
                f"no user_profiles row for user {user_id}: create the profile before a full pass",
                table="user_profiles",
            )

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        if not is_uuid(user_id):
            return None
        columns = ",".join(["user_id", *sorted(PROFILE_COLUMNS)])
        rows = await self._http.select(
            "user_profiles", {"user_id": f"eq.{user_id}", "select": columns}
        )
        return rows[0] if rows else None

    async def get_profile_status(self, user_id: str) -> dict[str, Any] | None:
        if not is_uuid(user_id):
            return None
        rows = await self._http.select(
            "user_profiles",
            {"user_id": f"eq.{user_id}", "select": ",".join(PROFILE_STATUS_COLUMNS)},
        )
        return rows[0] if rows else None

    # --- processing_jobs -------------------------------------------------------------------

    async def enqueue_job(self, new: NewJob) -> tuple[Job, bool]:
        result = await self._http.rpc(
            "enqueue_full_pass_job",
            {
                "p_user_id": new.user_id,
                "p_storage_path": new.storage_path,
                "p_conversation_count": new.conversation_count,
                "p_message_count": new.message_count,
                "p_pipeline_version": new.pipeline_version,
                "p_max_attempts": new.max_attempts,
                "p_force": new.force,
            },
        )
        return job_from_row(result["job"]), bool(result["created"])

    async def get_job(self, job_id: str) -> Job | None:
        if not is_uuid(job_id):
            return None
        rows = await self._http.select("processing_jobs", {"id": f"eq.{job_id}", "select": "*"})
        return job_from_row(rows[0]) if rows else None

    async def latest_job_for_user(self, user_id: str) -> Job | None:
        if not is_uuid(user_id):
            return None
        rows = await self._http.select(
            "processing_jobs",
            {"user_id": f"eq.{user_id}", "select": "*", "order": "created_at.desc", "limit": "1"},
        )
        return job_from_row(rows[0]) if rows else None

    async def last_finished_job(self, user_id: str) -> Job | None:
        if not is_uuid(user_id):
            return None
        rows = await self._http.select(
            "processing_jobs",
            {
                "user_id": f"eq.{user_id}",
                "status": "in.(complete,failed)",
                "select": "*",
                "order": "completed_at.desc",
                "limit": "1",
            },
        )
        return job_from_row(rows[0]) if rows else None

    async def claim_job(
        self, *, worker_id: str, lease_seconds: int, small_only: bool = False
    ) -> Job | None:
        args = {"p_worker_id": worker_id, "p_lease_seconds": lease_seconds}
        rows = await self._http.rpc("claim_next_job", {**args, "p_small_only": small_only})
        return job_from_row(rows[0]) if rows else None

    async def renew_lease(self, *, job_id: str, worker_id: str, lease_seconds: int) -> bool:
        args = {"p_job_id": job_id, "p_worker_id": worker_id, "p_lease_seconds": lease_seconds}
        return bool(await self._http.rpc("renew_job_lease", args))

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
        if status not in _FINAL_OR_QUEUED:
            raise ValueError(f"a job cannot be finished as {status.value!r}")
        args = {
            "p_job_id": job_id,
            "p_worker_id": worker_id,
            "p_status": status.value,
            "p_error": error_message,
            "p_run_after": run_after,
            "p_count_attempt": count_attempt,
        }
        return bool(await self._http.rpc("finish_job", args))

    async def requeue_job(self, job_id: str) -> Job:
        try:
            row = await job_rpc(
                self._http,
                "requeue_job",
                {"p_job_id": job_id},
                refused=f"job {job_id} has not failed: only a failed job can be retried",
            )
        except PostgrestError as exc:
            if exc.vendor_code == "23505":
                raise JobConflict(
                    "the user already has an active job; wait for it to finish before retrying",
                    table="processing_jobs",
                ) from exc
            raise
        return job_from_row(row)

    async def update_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        _refuse_unknown(fields, JOB_UPDATABLE_COLUMNS, table="processing_jobs")
        body = {**fields, "updated_at": datetime.now(UTC)}
        if not is_uuid(job_id) or not await self._patch(
            "processing_jobs", key="id", value=job_id, body=body
        ):
            raise JobNotFound(f"no job {job_id}")

    async def count_jobs_by_status(self) -> dict[str, int]:
        return {
            status.value: await self._count("processing_jobs", {"status": f"eq.{status.value}"})
            for status in JobStatus
        }

    # --- conversation_chunks ---------------------------------------------------------------

    async def upsert_chunks(self, *, user_id: str, job_id: str, chunks: Sequence[Chunk]) -> None:
        """Through `save_conversation_chunks` (supabase/migrations): one statement a batch,
        rows de-duplicated and written in id order, the earlier import remembered."""
        now = datetime.now(UTC)
        unique = {chunk.id: chunk for chunk in chunks}
        ordered = [unique[key] for key in sorted(unique)]
        for start in range(0, len(ordered), self._batch):
            rows = [
                {
                    k: jsonable(v)
                    for k, v in chunk_row(c, user_id=user_id, job_id=job_id, now=now).items()
                    if k not in _SET_BY_FUNCTION
                }
                for c in ordered[start : start + self._batch]
            ]
            await self._chunk_rpc(
                "save_conversation_chunks",
                {"p_user_id": user_id, "p_job_id": job_id, "p_rows": rows},
            )

    async def commit_chunks(self, *, user_id: str, job_id: str) -> int:
        args = {"p_user_id": user_id, "p_job_id": job_id}
        return int(await self._chunk_rpc("commit_conversation_chunks", args))

    async def rollback_chunks(self, *, user_id: str, job_id: str) -> tuple[int, int]:
        args = {"p_user_id": user_id, "p_job_id": job_id}
        result = await self._chunk_rpc("rollback_conversation_chunks", args)
        return int(result["removed"]), int(result["restored"])

    async def _chunk_rpc(self, fn: str, args: Mapping[str, Any]) -> Any:
        """A chunk function call; a conflict (409) is a concurrent writer's, and passes: retried
        a few times, then this attempt fails retryably. 23503 means the user's account row is
        gone (permanent)."""
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                return await self._http.rpc(fn, args)
            except PostgrestError as exc:
                if exc.vendor_code == "23503":
                    raise ProfileNotFound(
                        f"conversation_chunks refused the user's rows ({fn}): the user no longer "
                        "exists (23503); nothing to import for a deleted account",
                        table="conversation_chunks",
                    ) from exc
                if exc.vendor_code != "23505":
                    raise
                if attempt == _CONFLICT_RETRIES:
                    # Still conflicting: a writer holds on, or a product-side unique index. Only
                    # this attempt fails (StoreUnavailable is retried with backoff), not the job.
                    raise StoreUnavailable(
                        f"conversation_chunks kept refusing the import's rows with a conflict "
                        f"({fn}, 409 / 23505, {_CONFLICT_RETRIES + 1} times): another writer, "
                        "or a unique index of the product's on the table; the job retries",
                        table="conversation_chunks",
                    ) from exc
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def count_chunks(self, user_id: str) -> int:
        return await self._count("conversation_chunks", {"user_id": f"eq.{user_id}"})

    async def _count(self, table: str, filters: Mapping[str, str]) -> int:
        """Rows matching `filters`, from PostgREST's exact count (`Content-Range: 0-0/<n>`)."""
        response = await self._http.request(
            "GET",
            f"/rest/v1/{table}",
            table=table,
            action="count",
            params={**filters, "select": "id", "limit": "1"},
            headers={"Prefer": "count=exact"},
        )
        total = response.headers.get("content-range", "").rpartition("/")[2]
        if not total.isdigit():
            raise StoreError(f"{table}: count came back without a total ({total!r})", table=table)
        return int(total)

    # --- exports ---------------------------------------------------------------------------

    async def download_export(self, storage_path: str, dest: Path) -> int:
        bucket, _, key = storage_path.strip("/").partition("/")
        if not bucket or not key:
            raise ValueError(f"storage_path must be <bucket>/<path>, got {storage_path!r}")
        path = "/".join(quote(part, safe="") for part in (bucket, *key.split("/")))
        written = 0
        async with self._http.stream(
            "GET", f"/storage/v1/object/authenticated/{path}", table=storage_path, action="download"
        ) as response:
            try:
                with dest.open("wb") as out:
                    async for block in response.aiter_bytes(_WRITE_BLOCK):
                        out.write(block)
                        written += len(block)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise StoreUnavailable(
                    f"download of {storage_path!r} broke off after {written} bytes "
                    f"({type(exc).__name__}); Supabase Storage stopped answering mid-download",
                    table=storage_path,
                ) from exc
        return written
