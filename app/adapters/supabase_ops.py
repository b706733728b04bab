"""The ops page's queries on `SupabaseStore` (app/ops_port.py): a filtered, ordered page of
`processing_jobs` over PostgREST, and `ops_finished_jobs_by_hour` (supabase/migrations) for the
charts — one jsonb value, so PostgREST's row cap cannot cut it short."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.adapters.postgrest import SupabaseHttp
from app.adapters.rows import job_from_row, parse_timestamp
from app.domain import Job, JobStatus
from app.ops_port import LIST_JOBS_MAX, HourTotals, list_order_column

__all__ = ["SupabaseOpsStore"]


class SupabaseOpsStore:
    """Mixed into `SupabaseStore`, which provides `_http`."""

    if TYPE_CHECKING:
        _http: SupabaseHttp

    async def list_jobs(self, status: JobStatus, *, limit: int = 50, offset: int = 0) -> list[Job]:
        params = {
            "status": f"eq.{status.value}",
            "order": f"{list_order_column(status)}.desc,id.desc",
            "limit": str(max(1, min(limit, LIST_JOBS_MAX))),
            "offset": str(max(0, offset)),
            "select": "*",
        }
        return [job_from_row(row) for row in await self._http.select("processing_jobs", params)]

    async def finished_jobs_by_hour(self, since: datetime) -> list[HourTotals]:
        rows = await self._http.rpc("ops_finished_jobs_by_hour", {"p_since": since.astimezone(UTC)})
        return [
            HourTotals(
                hour=parse_timestamp(row["hour"]) or since,
                complete=int(row["complete"]),
                failed=int(row["failed"]),
                canceled=int(row["canceled"]),
                cost_usd=float(row["cost_usd"]),
            )
            for row in rows or []
        ]
