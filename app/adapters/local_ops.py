"""The ops page's queries on `LocalStore` (app/ops_port.py): the same semantics as
`SupabaseOpsStore` and `ops_finished_jobs_by_hour` in supabase/migrations, checked by the
contract suite on both."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from app.adapters.rows import job_from_row, parse_timestamp
from app.domain import Job, JobStatus
from app.ops_port import LIST_JOBS_MAX, HourTotals, list_order_column

__all__ = ["LocalOpsStore"]

T = TypeVar("T")

# Timestamps are ISO-8601 UTC text of one shape (`format_timestamp` in rows.py): the first 13
# characters are the hour, and text order is time order.
_BY_HOUR = """
SELECT substr(completed_at, 1, 13) AS hour,
       SUM(status = 'complete') AS complete,
       SUM(status = 'failed') AS failed,
       SUM(status = 'canceled') AS canceled,
       COALESCE(SUM(cost_usd), 0) AS cost_usd
FROM processing_jobs
WHERE status IN ('complete', 'failed', 'canceled') AND completed_at >= ?
GROUP BY hour
ORDER BY hour
"""


class LocalOpsStore:
    """Mixed into `LocalStore`, which provides `_run`."""

    if TYPE_CHECKING:

        async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def list_jobs(self, status: JobStatus, *, limit: int = 50, offset: int = 0) -> list[Job]:
        column = list_order_column(status)  # one of three fixed names, never from a request
        sql = (
            "SELECT * FROM processing_jobs WHERE status = ?"  # noqa: S608
            f" ORDER BY {column} DESC, id DESC LIMIT ? OFFSET ?"
        )
        params = (status.value, max(1, min(limit, LIST_JOBS_MAX)), max(0, offset))
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [job_from_row(dict(row)) for row in rows]

    async def finished_jobs_by_hour(self, since: datetime) -> list[HourTotals]:
        start = since.astimezone(UTC).isoformat(timespec="microseconds")
        rows = await self._run(lambda conn: conn.execute(_BY_HOUR, (start,)).fetchall())
        return [
            HourTotals(
                hour=parse_timestamp(f"{row['hour']}:00:00+00:00") or since,
                complete=int(row["complete"]),
                failed=int(row["failed"]),
                canceled=int(row["canceled"]),
                cost_usd=float(row["cost_usd"]),
            )
            for row in rows
        ]
