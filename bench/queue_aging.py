"""The fair queue's aging, shown through the local store's real `claim_job` (issue 11).

A big job's place in line is `run_after + 3.6 s per MB`, at most an hour later than it was due
(app/queue_order.py). So a 1 GB job that has waited longer than that hour is claimed before small
imports that arrive now; one that has waited half an hour still lets them go first; and a
small-import slot (`small_only`) never takes it, however long it waited.

Each case is a fresh `LocalStore` in a temp dir: a 1 GB job (its `export_bytes` measured, as
after its download), made to have been due `waited` seconds ago by setting `run_after` and
`created_at` in the past, and then small imports (2 MB, measured) enqueued now. The claims that
follow are the store's own, in the order it gives.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.adapters.local_store import LocalStore
from app.domain import NewJob
from app.queue_order import MAX_PENALTY_SECONDS, MB

__all__ = ["CASES", "aging_check"]

BIG_BYTES = 1024 * MB
SMALL_BYTES = 2 * MB
SMALLS = 3
# (name, seconds the big job has been due, claim from a small-import slot)
CASES: tuple[tuple[str, float, bool], ...] = (
    ("waited 61 min (past the 60 min cap)", MAX_PENALTY_SECONDS + 60, False),
    ("waited 30 min (under the cap)", MAX_PENALTY_SECONDS / 2, False),
    ("waited 61 min, small-import slot", MAX_PENALTY_SECONDS + 60, True),
)


def _backdate(db: Path, job_id: str, seconds: float) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="microseconds")
    conn = sqlite3.connect(db, timeout=10)
    try:
        with conn:
            conn.execute(
                "UPDATE processing_jobs SET run_after = ?, created_at = ? WHERE id = ?",
                (past, past, job_id),
            )
    finally:
        conn.close()


async def _case(waited: float, *, small_only: bool) -> list[str]:
    """The order in which claims take the jobs: "big" or "small N"."""
    with tempfile.TemporaryDirectory(prefix="bench-aging-") as tmp:
        store = LocalStore(Path(tmp))
        try:
            names: dict[str, str] = {}
            jobs = [("big", BIG_BYTES)] + [(f"small {n + 1}", SMALL_BYTES) for n in range(SMALLS)]
            for n, (name, size) in enumerate(jobs):
                user = f"00000000-0000-4000-8000-{n:012d}"
                await store.ensure_profile(user)
                job, _ = await store.enqueue_job(NewJob(user_id=user, storage_path=f"x/{n}"))
                await store.update_job(job.id, {"export_bytes": size})
                names[job.id] = name
                if name == "big":
                    _backdate(store.db_path, job.id, waited)
            order = []
            while claimed := await store.claim_job(
                worker_id="bench", lease_seconds=60, small_only=small_only
            ):
                order.append(names[claimed.id])
            return order
        finally:
            await store.aclose()


def aging_check() -> list[dict[str, Any]]:
    """Each case's claim order; `ok` when the big job is where aging says it must be."""
    results = []
    for name, waited, small_only in CASES:
        order = asyncio.run(_case(waited, small_only=small_only))
        if small_only:
            ok = "big" not in order and len(order) == SMALLS
        elif waited > MAX_PENALTY_SECONDS:
            ok = order[0] == "big"
        else:
            ok = order[-1] == "big"
        results.append({"case": name, "waited_s": waited, "order": order, "ok": ok})
    return results
