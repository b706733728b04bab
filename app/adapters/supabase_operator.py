"""The operator's side of `SupabaseStore` (issue 11), over PostgREST: the job event trail
(insert-only for the service key), and RPCs to the functions of
`supabase/migrations/20261201100000_operator_fleet.sql` for cancel, the bulk-retry search,
forgetting a user and step-duration samples. Reads page past PostgREST's row cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.adapters.postgrest import PostgrestError, SupabaseHttp, is_uuid
from app.adapters.rows import event_from_row, failed_job_from_row, job_from_row
from app.domain import Job
from app.errors import JobConflict, JobNotFound
from app.fleet import CancelOutcome, FailedJob, FailedJobQuery, ForgetCounts, JobEvent

__all__ = ["SupabaseOperatorStore", "job_rpc"]

_EVENT_COLUMNS = "job_id,user_id,kind,attempt,worker_id,step,detail"
# PostgREST caps a read at 1,000 rows by default (db-max-rows); a page never asks for more, and
# paging stops only at an empty page, so a lower cap on the server cannot cut a list short.
_EVENTS_PAGE = 1000


async def job_rpc(http: SupabaseHttp, fn: str, args: Mapping[str, Any], *, refused: str) -> Any:
    """Call a SQL function on the job `args["p_job_id"]`: its raise of P0002 (no such job) is
    `JobNotFound`, of P0001 (the job is not in a state `fn` takes) `JobConflict(refused)`."""
    job_id = args["p_job_id"]
    if not is_uuid(job_id):
        raise JobNotFound(f"no job {job_id}")
    try:
        return await http.rpc(fn, args)
    except PostgrestError as exc:
        if exc.vendor_code == "P0002":
            raise JobNotFound(f"no job {job_id}") from exc
        if exc.vendor_code == "P0001":
            raise JobConflict(refused, table="processing_jobs") from exc
        raise


class SupabaseOperatorStore:
    """Mixed into `SupabaseStore`, which provides `_http`."""

    if TYPE_CHECKING:
        _http: SupabaseHttp

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
        row = {
            "job_id": job_id,
            "user_id": user_id,
            "kind": kind,
            "attempt": attempt,
            "worker_id": worker_id,
            "step": step,
            "detail": dict(detail or {}),
        }
        await self._http.request(
            "POST",
            "/rest/v1/processing_job_events",
            table="processing_job_events",
            action="insert",
            params={"columns": _EVENT_COLUMNS},
            json=[row],
            headers={"Prefer": "return=minimal"},
        )

    async def list_job_events(self, job_id: str) -> list[JobEvent]:
        if not is_uuid(job_id):
            return []
        events: list[JobEvent] = []
        while True:
            params = {"job_id": f"eq.{job_id}", "order": "id.asc", "limit": str(_EVENTS_PAGE)}
            if events:
                params["id"] = f"gt.{events[-1].id}"
            rows = await self._http.select("processing_job_events", {**params, "select": "*"})
            if not rows:
                return events
            events += [event_from_row(row) for row in rows]

    # --- cancel ----------------------------------------------------------------------------

    async def cancel_job(self, job_id: str, *, message: str) -> tuple[Job, CancelOutcome]:
        result = await job_rpc(
            self._http,
            "cancel_job",
            {"p_job_id": job_id, "p_message": message},
            refused=f"job {job_id} has finished: only a queued or running job can be canceled",
        )
        return job_from_row(result["job"]), CancelOutcome(result["outcome"])

    # --- the bulk-retry search -------------------------------------------------------------

    async def find_failed_jobs(self, query: FailedJobQuery) -> list[FailedJob]:
        if query.user_id is not None and not is_uuid(query.user_id):
            return []
        args: dict[str, Any] = {
            "p_since": query.since.isoformat() if query.since else None,
            "p_until": query.until.isoformat() if query.until else None,
            "p_error_contains": query.error_contains or None,
            "p_step": query.step or None,
            "p_user_id": query.user_id,
            "p_limit": 500,
        }
        found: list[FailedJob] = []
        after: str | None = None
        while True:
            rows = await self._http.rpc("find_failed_jobs", {**args, "p_after": after})
            if not rows:
                break
            found += [failed_job_from_row(row) for row in rows]
            after = str(rows[-1]["id"])
        return sorted(found, key=lambda j: (j.failed_at or j.created_at, j.job_id))

    # --- forget ----------------------------------------------------------------------------

    async def forget_user(self, user_id: str, *, include_chunks: bool = False) -> ForgetCounts:
        if not is_uuid(user_id):
            return ForgetCounts()
        args = {"p_user_id": user_id, "p_include_chunks": include_chunks}
        try:
            result = await self._http.rpc("forget_user_data", args)
        except PostgrestError as exc:
            if exc.vendor_code == "P0001":
                raise JobConflict(
                    f"user {user_id} has a queued or running job: cancel it first, and wait "
                    "until it has stopped",
                    table="processing_jobs",
                ) from exc
            raise
        return ForgetCounts(
            jobs=int(result["jobs"]),
            events=int(result["events"]),
            fact_cache=int(result["fact_cache"]),
            chunks=int(result["chunks"]),
            job_ids=tuple(str(i) for i in result.get("job_ids") or ()),
        )

    # --- stuck detection's history ---------------------------------------------------------

    async def step_duration_samples(
        self, steps: Sequence[str], *, per_step: int = 500
    ) -> dict[str, list[tuple[float, float | None]]]:
        result = await self._http.rpc(
            "recent_step_durations", {"p_steps": ",".join(steps), "p_per_step": per_step}
        )
        return {
            step: [(float(d), None if u is None else float(u)) for d, u in result.get(step) or []]
            for step in steps
        }
