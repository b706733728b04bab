"""Forget a user (issue 11): remove the service's own data for them — job events, jobs, cached
facts, and any temp files of their jobs left on this machine; their `conversation_chunks` (the
product's) only when asked. Refused while one of their jobs is queued or running, unless asked to
cancel it first.

The profile row is the product's and stays as it is: its portrait (memory_md, the sections,
soulprint_text) and full_pass_* columns are what the product shows its user, and the product
deletes the row with the account (user_profiles cascades from auth.users). No job of theirs is
active by then, so the status is never left at `processing`: a job canceled on the way here has
written `failed` with the words saying so (app/cancellation.py).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from app.cancellation import request_cancel
from app.domain import Job
from app.errors import JobConflict
from app.fleet import ForgetCounts
from app.metrics import METRICS
from app.ports import Store

__all__ = ["ForgetReport", "forget_user_data", "job_temp_prefix", "remove_job_temp_dirs"]

log = structlog.get_logger(__name__)


def job_temp_prefix(job_id: str) -> str:
    """The prefix of a job's temp directory (`tempfile.TemporaryDirectory(prefix=...)`), so the
    files a crashed run left behind can be found by job."""
    return f"soulprint-{job_id}-"


def remove_job_temp_dirs(job_ids: Iterable[str], *, root: Path | None = None) -> int:
    """Delete the temp directories of these jobs under `root` (the system temp dir)."""
    base = root or Path(tempfile.gettempdir())
    removed = 0
    for job_id in job_ids:
        for path in base.glob(job_temp_prefix(job_id) + "*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
    return removed


@dataclass(frozen=True, slots=True)
class ForgetReport:
    user_id: str
    counts: ForgetCounts
    temp_dirs: int
    chunks_included: bool
    canceled_job: Job | None = None


async def _stop_active(store: Store, job: Job, *, actor: str, wait_seconds: float) -> Job:
    canceled, _ = await request_cancel(store, job.id, actor=actor)
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while canceled.status.active and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(1.0)
        canceled = await store.get_job(job.id) or canceled
    if canceled.status.active:
        raise JobConflict(
            f"a cancel was requested for the user's running job {job.id}; it stops at its next "
            "step boundary. Repeat this once the job shows status 'canceled' "
            f"(GET /jobs/{job.id})",
            table="processing_jobs",
        )
    return canceled


async def forget_user_data(
    store: Store,
    user_id: str,
    *,
    actor: str,
    cancel: bool = False,
    chunks: bool = False,
    wait_seconds: float = 0.0,
    temp_root: Path | None = None,
) -> ForgetReport:
    """Remove the user's data and say what went, in counts.

    With an active job: `JobConflict` — unless `cancel`, then the job is canceled first (a queued
    one at once; a running one is waited for up to `wait_seconds`, then still refused).
    """
    canceled: Job | None = None
    latest = await store.latest_job_for_user(user_id)
    if latest is not None and latest.status.active:
        if not cancel:
            raise JobConflict(
                f"user {user_id} has a {latest.status.value} job ({latest.id}): it must stop "
                "before their data is removed. Cancel it first (cancel=true / --cancel)",
                table="processing_jobs",
            )
        canceled = await _stop_active(store, latest, actor=actor, wait_seconds=wait_seconds)
    counts = await store.forget_user(user_id, include_chunks=chunks)
    temp_dirs = await asyncio.to_thread(remove_job_temp_dirs, counts.job_ids, root=temp_root)
    METRICS.users_forgotten.inc()
    log.info(
        "user.forgotten",
        user_id=user_id,
        by=actor,
        jobs=counts.jobs,
        events=counts.events,
        fact_cache=counts.fact_cache,
        chunks=counts.chunks,
        temp_dirs=temp_dirs,
    )
    return ForgetReport(
        user_id=user_id,
        counts=counts,
        temp_dirs=temp_dirs,
        chunks_included=chunks,
        canceled_job=canceled,
    )
